"""The fast reader and the grammar agree on every terminal they share (KEY, NAME, QUANTITY, HOURS, modes, periods).

Each case is a token, where it stands, and whether the grammar accepts it
there (decided by hand from grammar.lark's terminals). Lark and the reader
must both give that answer, and where both read it, the same items.
"""

from __future__ import annotations

from typing import Any, cast

import lark
import pytest

from quotalang import parser, reader

PLACES = {
    "key": "group a {{\n  {} 1\n}}\n",
    "quantity": "group a {{\n  limits.cpu {}\n}}\n",
    "lending": "group a {{\n  limits.cpu 4 lend {}\n}}\n",
    "name": "group {} {{\n}}\n",
    "parent": "group a {{\n}}\ngroup b in {} {{\n}}\n",
    "hours": "group a {{\n  cash requests.nvidia.com/gpu {} per week\n}}\n",
    "mode": "group a {{\n  mode {}\n  limits.cpu 1\n}}\n",
    "period": "group a {{\n  cash requests.nvidia.com/gpu 10h per {}\n}}\n",
}

CASES = [
    # KEY: a lowercase letter, then letters, digits, _ . - /
    ("key", "limits.cpu", True),
    ("key", "limits.cpu.A4", True),
    ("key", "requests.nvidia.com/gpu.A100", True),
    ("key", "count/pods", True),
    ("key", "hugepages-2Mi", True),
    ("key", "a_b", True),
    ("key", "Limits.cpu", False),
    ("key", "_cpu", False),
    ("key", "cpu$", False),
    ("key", "limits.cpu:", False),
    ("key", "limits.cpu,", False),
    # QUANTITY: the whole number-like run; the checker judges its form later (E109)
    ("quantity", "2000", True),
    ("quantity", "500m", True),
    ("quantity", "8Ti", True),
    ("quantity", "1.5.5", True),
    ("quantity", "-1", True),
    ("quantity", "+1", True),
    ("quantity", ".5", True),
    ("quantity", "0x10", True),
    ("quantity", "1e+3", True),
    ("quantity", "m500", False),
    ("quantity", "1_000", False),
    ("quantity", "1/2", False),
    ("quantity", "..5", False),
    ("quantity", "\u00bd", False),
    ("lending", "2", True),
    ("lending", "250m", True),
    ("lending", "x", False),
    # NAME: lowercase letters and digits, - _ . inside
    ("name", "team-a", True),
    ("name", "a", True),
    ("name", "0team", True),
    ("name", "a.b_c", True),
    ("name", "team-", False),
    ("name", "Team", False),
    ("name", "-team", False),
    ("name", "team/a", False),
    ("parent", "a", True),
    ("parent", "A", False),
    # HOURS: digits, an optional fraction, h
    ("hours", "1000h", True),
    ("hours", "1.5h", True),
    ("hours", "h", False),
    ("hours", "1000", False),
    ("hours", "1.h", False),
    ("hours", "1000H", False),
    # the words `mode` and `per` take
    ("mode", "enforce", True),
    ("mode", "warn", True),
    ("mode", "audit", True),
    ("mode", "warning", False),
    ("mode", "Audit", False),
    ("period", "day", True),
    ("period", "week", True),
    ("period", "month", True),
    ("period", "fortnight", False),
    ("period", "weeks", False),
]


@pytest.mark.parametrize(("place", "token", "accepted"), CASES, ids=[f"{p}-{t}" for p, t, _ in CASES])
def test_the_reader_and_lark_accept_the_same_tokens(place: str, token: str, accepted: bool) -> None:
    text = PLACES[place].format(token)
    by_lark = parser._lark_reading(text, "f.quota")
    by_reader = parser._fast_items(text, "f.quota")
    assert (by_lark is not None) == accepted
    assert (by_reader is not None) == accepted
    assert by_reader == by_lark


def test_a_terminal_changed_in_the_grammar_changes_the_reader() -> None:
    """The reader has no copy of the terminals: a QUANTITY that takes `_` makes it read `1_000` too."""
    old = "QUANTITY: /[+-]?\\.?[0-9][A-Za-z0-9.+\\-]*/"
    grammar = parser._grammar()
    assert old in grammar
    changed = lark.Lark(grammar.replace(old, "QUANTITY: /[+-]?\\.?[0-9][A-Za-z0-9_.+\\-]*/"), parser="lalr",
                        propagate_positions=True, maybe_placeholders=False)

    def through(text: str, filename: str) -> list[Any] | None:
        return cast(list[Any], parser._Build(filename).transform(changed.parse(text)))

    text = PLACES["quantity"].format("1_000")
    assert parser._fast_items(text, "f.quota") is None
    items = reader.read(text, "f.quota", reader.Grammar.of(changed, parser._keywords(), through))
    assert items is not None
    assert items[0].body[0].quantity == "1_000"
