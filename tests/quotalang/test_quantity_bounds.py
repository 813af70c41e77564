"""quotalang's bounds on a quantity (issue 25 #6, #7): past them a QuantityError, never a ValueError.

Python refuses to turn more than 4,300 digits into an int (or back), so a
long quantity used to raise a plain ValueError out of the parser, which the
engine took for its own failure (admitted under `--failure-mode allow`), and
"1e5000" parsed to a value whose message could not be printed (a 500).
"""

from __future__ import annotations

import pytest

from quotalang.quantity import MAX_DIGITS, MAX_LENGTH, QuantityError, parse_quantity

TOO_LONG = [
    "9" * 4401,  # the finding: more digits than Python converts
    "0." + "0" * 4398 + "1",  # in range (Kubernetes reads 1n), but body-sized
    "1" + "0" * MAX_LENGTH,
    "0" * (MAX_LENGTH + 1),
]
OUT_OF_RANGE = [
    "1e5000",
    "1e128",  # exactly the bound: refused
    "1E128",
    "-1e128",
    "99999999999999999999e109",
    "1e2147483647",  # the largest int32 scale
    "1" + "0" * 128,  # 129 digits: 10^128
    "1" + "0" * 119 + "E",  # E is 10^18: 10^137
]


@pytest.mark.parametrize("text", TOO_LONG, ids=lambda t: f"{t[:12]}...{len(t)}")
def test_an_over_long_quantity_is_a_quantity_error_naming_its_length(text: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_quantity(text)
    message = str(caught.value)
    assert f"({len(text)} characters)" in message
    assert f"longer than {MAX_LENGTH} characters" in message
    assert len(message) < 120  # the message does not carry the value


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_a_magnitude_of_10_to_the_128_or_more_is_out_of_range(text: str) -> None:
    with pytest.raises(QuantityError, match=f"out of range: quotalang accepts magnitudes below 1e{MAX_DIGITS}"):
        parse_quantity(text)


def test_just_inside_the_bounds_is_exact() -> None:
    below = "9" * 128  # 10^128 - 1 units
    assert parse_quantity(below).nanos == (10**128 - 1) * 10**9
    assert parse_quantity("9.99e127").nanos == 999 * 10 ** (125 + 9)
    longest = "0." + "0" * (MAX_LENGTH - 3) + "1"  # 160 characters: 1n, as Kubernetes rounds it
    assert len(longest) == MAX_LENGTH
    assert parse_quantity(longest).nanos == 1
    assert parse_quantity("1e-2147483647").nanos == 1  # tiny exponents still round up to 1n
    assert parse_quantity("-1e-5000").nanos == -1


def test_every_canonical_string_of_an_accepted_value_parses_back() -> None:
    largest = parse_quantity("9" * 128) + parse_quantity("999999999n")  # the most digits a value can print
    text = str(-largest)
    assert len(text) <= MAX_LENGTH
    assert parse_quantity(text) == -largest
