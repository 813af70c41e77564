"""Hours and nanos: exact both ways, never through a float."""

from __future__ import annotations

from fractions import Fraction

import pytest

from quotalang.units import NANO, NANOS_PER_HOUR, format_hours, hours_text, hours_to_nanos, parse_hours


def test_one_unit_hour_is_3600_billion_nano_unit_seconds() -> None:
    assert NANO == 10**9
    assert NANOS_PER_HOUR == 3_600_000_000_000


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("1", NANOS_PER_HOUR), ("12.5", 45_000_000_000_000), ("0.1", 360_000_000_000), (" 20000 ", 20000 * NANOS_PER_HOUR),
     ("0.000000000000001", 0)],  # below one nano-unit-second: rounded down
)
def test_hours_to_nanos_is_exact(text: str, nanos: int) -> None:
    assert hours_to_nanos(text) == nanos


def test_a_float_would_not_be_exact() -> None:
    # 0.1 h is not representable as a float: 0.1 * 3600e9 == 360000000000.00006
    assert hours_to_nanos("0.1") == 360 * NANO
    assert hours_to_nanos("1000000.1") == 1_000_000 * NANOS_PER_HOUR + 360 * NANO


@pytest.mark.parametrize("text", ["lots", "", "1/0", "1h"])
def test_not_a_number_of_hours_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hours(text)


@pytest.mark.parametrize(
    ("nanos", "shown"),
    [(0, "0h"), (200 * NANOS_PER_HOUR, "200h"), (45_000_000_000_000, "12.5h"), (NANOS_PER_HOUR // 3, "0.33h"),
     (NANOS_PER_HOUR * 2 // 3, "0.67h"), (1, "0h"), (NANOS_PER_HOUR + NANOS_PER_HOUR // 100, "1.01h")],
)
def test_format_hours_trims_to_two_decimals(nanos: int, shown: str) -> None:
    assert format_hours(nanos) == shown


def test_format_hours_of_huge_amounts_keeps_every_digit() -> None:
    # a float has 53 bits: 2**60 + 0.5 hours would print rounded
    nanos = (2**60) * NANOS_PER_HOUR + NANOS_PER_HOUR // 2
    assert format_hours(nanos) == f"{2**60}.5h"


@pytest.mark.parametrize(
    ("value", "text"),
    [(Fraction(20000), "20000"), (Fraction(25, 2), "12.5"), (Fraction(1, 8), "0.125"), (Fraction(-3, 2), "-1.5")],
)
def test_hours_text_is_exact_decimal(value: Fraction, text: str) -> None:
    assert hours_text(value) == text
