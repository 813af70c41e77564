"""Garbled policies reach users only as `PolicyError`, never as a traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotalang.compiler import compile_sources
from quotalang.errors import PolicyError
from quotalang.loader import load_text

SEED = """\
settings {
  group label "g"
  model label gpu "g/gpu"
  warn at 90%
}
group root {
  limits.cpu 100
  requests.nvidia.com/gpu.A100 8
  cash requests.nvidia.com/gpu 100h per week
}
group team in root {
  mode warn
  limits.cpu 40
  requests.nvidia.com/gpu.A100 4
  cash requests.nvidia.com/gpu 50h per week
}
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1 * (2 - 1)
    template spec.template or spec.x
  }
  scale spec.replicas
  surge spec.strategy.rollingUpdate.maxSurge default 25%
}
"""

TOKENS = [
    "group", "in", "settings", "kind", "pods", "each", "replicas", "template", "scale", "surge",
    "cash", "mode", "warn", "per", "week", "default", "import", "{", "}", "\n", " ", "(", ")", "*",
    "+", "-", ".", '"x"', "limits.cpu", "requests.nvidia.com/gpu.A100", "100", "8Ti", "500m",
    "10h", "90%", "root", "apps/v1", "Deployment", "spec.replicas", ".template", "#c", "label",
    "model", "gpu", "unlabelled", "deny", "allow", "é", "\t", "\r\n", "1e3", "-1", "99999999999999999999",
]


def _accepts_only_policy_errors(text: str) -> None:
    try:
        compile_sources(load_text(text, "fuzz.quota"))
    except PolicyError as exc:
        assert exc.diagnostics, "a PolicyError must carry at least one diagnostic"
        for diag in exc.diagnostics:
            assert diag.code[0] in "EW" and diag.message
        exc.render()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_token_soup(text: str) -> None:
    _accepts_only_policy_errors(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(SEED)), st.integers(0, 8), st.text(max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_valid_policy(edits: list[tuple[int, int, str]]) -> None:
    text = SEED
    for at, drop, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + drop:]
    _accepts_only_policy_errors(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _accepts_only_policy_errors(text)
