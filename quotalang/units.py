"""Nano units and unit-hours: where quantities meet time, exactly.

A quantity is an integer count of nano units (`NANO` per unit); cash is an
integer count of nano-unit-seconds (`NANOS_PER_HOUR` per unit-hour). Hours are
read and printed here only, with `Fraction` and integers: a float would round
a budget, and two copies of the arithmetic would drift apart.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

NANO = 10**9
SECONDS_PER_HOUR = 3600
NANOS_PER_HOUR = NANO * SECONDS_PER_HOUR  # nano-unit-seconds in one unit-hour


@lru_cache(maxsize=4096)
def parse_hours(text: str) -> Fraction:
    """An amount of hours as written (`12.5`, `20000`), exactly; ValueError when it is not a number.

    Cached: a generated policy repeats the same few amounts thousands of times.
    """
    try:
        return Fraction(text.strip())
    except ZeroDivisionError:  # "1/0"
        raise ValueError(f"{text!r} is not a number of hours") from None


@lru_cache(maxsize=4096)
def hours_to_nanos(text: str) -> int:
    """`12.5` (hours) → nano-unit-seconds, rounded down; ValueError when it is not a number."""
    value = parse_hours(text) * NANOS_PER_HOUR
    return value.numerator // value.denominator


_CHUNK = 10**1000


def decimal(n: int) -> str:
    """str(n) for n ≥ 0 of any size: past Python's 4,300-digit conversion limit, 1,000 digits at a time.

    A ledger written before quantities were bounded may hold such a sum; printing it must not fail.
    """
    if n < _CHUNK:
        return str(n)
    high, low = divmod(n, _CHUNK)
    return decimal(high) + str(low).rjust(1000, "0")


def format_hours(nanos: int) -> str:
    """Nano-unit-seconds as unit-hours for a person: `200h`, `12.5h` (at most two decimals, half to even)."""
    whole, rest = divmod(nanos, NANOS_PER_HOUR)
    if not rest:
        return f"{'-' if whole < 0 else ''}{decimal(abs(whole))}h"
    cents = round(Fraction(nanos, NANOS_PER_HOUR) * 100)
    units, fraction = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}{decimal(units)}.{fraction:02d}".rstrip("0").rstrip(".") + "h"


def hours_text(value: Fraction) -> str:
    """Exact decimal text of a sum of decimal hour amounts (`20000`, `12.5`), for diagnostics."""
    if value.denominator == 1:
        return str(value.numerator)
    scale = 0
    while (10**scale) % value.denominator:
        scale += 1  # ends: the amounts were written as decimals
    sign = "-" if value < 0 else ""
    digits = str(abs(value.numerator) * 10**scale // value.denominator).rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}".rstrip("0").rstrip(".")
