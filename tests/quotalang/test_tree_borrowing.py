"""`quotalang tree` with lending: lend / borrow / guarantee per key, and with usage own / borrowed / lent out."""

from __future__ import annotations

import io
import json
from pathlib import Path

from quotalang.cli import main

# root's 8 GPUs are all carved (own room 0); a lends 2 of its 4, b may borrow 2 beyond its 4.
POLICY = """\
group root {
  requests.nvidia.com/gpu 8
  limits.cpu 10
}
group a in root {
  requests.nvidia.com/gpu 4 lend 2
  limits.cpu 4
}
group b in root {
  requests.nvidia.com/gpu 4 borrow 2
  limits.cpu 4
}
"""


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def write(tmp_path: Path, usage: str | None) -> list[str]:
    (tmp_path / "p.quota").write_text(POLICY)
    argv = ["tree", "--policy", str(tmp_path)]
    if usage is not None:
        (tmp_path / "u.json").write_text(usage)
        argv += ["--usage", str(tmp_path / "u.json")]
    return argv


def test_json_carries_the_figures_on_lending_keys_only(tmp_path: Path) -> None:
    # b uses 6: T 4 − 6 = −2 ≥ −2, borrowed 2. root: own room 8 − 8 = 0, a offers min(2, 4) = 2, which
    # funds b: from root. root's T 0 + 2 − 2 = 0 cannot drop, so a's 2 are lent out. a's guarantee 4 − 2 = 2.
    code, out = run(*write(tmp_path, '{"b": {"requests.nvidia.com/gpu": "6"}}'), "--format", "json")
    assert code == 0
    (root,) = json.loads(out)
    a, b = root["children"]
    gpu_a, cpu_a = a["limits"]
    assert gpu_a["lending"] == {"lend": "2", "borrow": "0", "guarantee": "2", "own": "0", "borrowed": "0",
                                "borrowed_from": [], "lent_out": "2", "over": "0"}
    assert "lending" not in cpu_a  # nobody lends or borrows cpu
    assert b["limits"][0]["lending"]["borrowed"] == "2"
    assert b["limits"][0]["lending"]["own"] == "6"
    assert b["limits"][0]["lending"]["borrowed_from"] == [{"group": "root", "path": "root", "amount": "2"}]
    assert root["limits"][0]["lending"]["guarantee"] == "8"  # a root lends nothing


def test_text_shows_terms_and_with_usage_the_figures(tmp_path: Path) -> None:
    code, out = run(*write(tmp_path, None))
    assert code == 0
    assert "lend 2  borrow 0  guarantee 2\n" in out  # a, no usage: terms only
    assert "borrowed" not in out
    code, out = run(*write(tmp_path, '{"b": {"requests.nvidia.com/gpu": "6"}}'))
    assert code == 0
    assert "lend 2  borrow 0  guarantee 2  own 0  borrowed 0  lent out 2\n" in out  # a
    assert "lend 0  borrow 2  guarantee 4  own 6  borrowed 2 (from root 2)  lent out 0\n" in out  # b


def test_text_names_use_beyond_hard_plus_borrow(tmp_path: Path) -> None:
    # b uses 7 (admitted in warn mode, say): T −3 < −2: borrowed 2 (its share stops at −2), over 1.
    code, out = run(*write(tmp_path, '{"b": {"requests.nvidia.com/gpu": "7"}}'))
    assert code == 0
    assert "own 7  borrowed 2 (from root 2)  lent out 0  over 1\n" in out
