"""Kubernetes `resource.Quantity`, exactly: parsing, canonical form, arithmetic.

A quantity is kept as an integer number of nano units (Kubernetes rounds every
non-zero value up to 1n and caps it at 2^63-1 units), so comparison and
arithmetic are plain integer operations and never floats. The format (which
suffix family to print with) follows apimachinery's rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from quotalang.errors import InputError, QuantityError
from quotalang.units import NANO, decimal

Format = Literal["DecimalSI", "BinarySI", "DecimalExponent"]

MAX_UNITS = 2**63 - 1  # the cap Kubernetes puts on BinarySI values
_MAX_NANOS = MAX_UNITS * NANO

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {0: "", **{v: k for k, v in _BINARY_SUFFIXES.items()}}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")

__all__ = [
    "MAX_DIGITS",
    "MAX_LENGTH",
    "MAX_UNITS",
    "NANO",
    "Format",
    "Quantity",
    "QuantityError",
    "approximate",
    "canonical",
    "canonical_together",
    "parse_quantity",
    "ratio",
]


class Quantity:
    """An exact, immutable Kubernetes quantity."""

    __slots__ = ("format", "nanos")

    nanos: int
    format: Format

    def __init__(self, nanos: int, format: Format = "DecimalSI") -> None:
        object.__setattr__(self, "nanos", nanos)
        object.__setattr__(self, "format", format)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Quantity is immutable")

    @classmethod
    def from_nanos(cls, nanos: int, format: Format = "DecimalSI") -> Quantity:
        return cls(nanos, format)

    @classmethod
    def zero(cls) -> Quantity:
        return cls(0, "DecimalSI")

    # comparison: by value only, like Quantity.Cmp
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.nanos == other.nanos

    def __hash__(self) -> int:
        return hash(self.nanos)

    def __lt__(self, other: Quantity) -> bool:
        return self.nanos < other.nanos

    def __le__(self, other: Quantity) -> bool:
        return self.nanos <= other.nanos

    def __gt__(self, other: Quantity) -> bool:
        return self.nanos > other.nanos

    def __ge__(self, other: Quantity) -> bool:
        return self.nanos >= other.nanos

    # arithmetic: the left operand's format, unless it is zero (Add/Sub)
    def _format_with(self, other: Quantity) -> Format:
        return other.format if self.nanos == 0 else self.format

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.nanos + other.nanos, self._format_with(other))

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(self.nanos - other.nanos, self._format_with(other))

    def __neg__(self) -> Quantity:
        return Quantity(-self.nanos, self.format)

    def __mul__(self, times: int) -> Quantity:
        if not isinstance(times, int) or isinstance(times, bool):
            return NotImplemented
        return Quantity(self.nanos * times, self.format)

    __rmul__ = __mul__

    def is_zero(self) -> bool:
        return self.nanos == 0

    def value(self) -> int:
        """Whole units, rounded away from zero (Quantity.Value)."""
        return _round_away(self.nanos, NANO)

    def milli_value(self) -> int:
        """Milli units, rounded away from zero (Quantity.MilliValue)."""
        return _round_away(self.nanos, NANO // 1000)

    def scaled_value(self, scale: int) -> int:
        """Units of 10^scale, rounded away from zero (Quantity.ScaledValue), as an exact integer."""
        if scale >= -9:
            return _round_away(self.nanos, 10 ** (scale + 9))
        return self.nanos * int(10 ** (-9 - scale))

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __str__(self) -> str:
        return canonical(self.nanos, self.format)


def ratio(part: int, whole: int) -> float:
    """part / whole as a float, ±inf past the float range (never OverflowError).

    Like `AsApproximateFloat64`, which returns ±Inf out of range: a value the
    ledger holds from before the bounds (or summed past them) must not stop
    /metrics or a page from answering. `whole` is not 0.
    """
    try:
        return part / whole
    except OverflowError:
        return math.inf if (part < 0) == (whole < 0) else -math.inf


def approximate(nanos: int) -> float:
    """Whole units as a float for metrics (`AsApproximateFloat64`): ±inf past the float range."""
    return ratio(nanos, NANO)


def _round_away(nanos: int, unit: int) -> int:
    magnitude = -(-abs(nanos) // unit)
    return magnitude if nanos >= 0 else -magnitude


def _strip_tens(mantissa: int, exponent: int) -> tuple[int, int]:
    while mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    return mantissa, exponent


def canonical(nanos: int, format: Format) -> str:
    """CanonicalizeBytes: the shortest exact form with an SI, binary or e suffix."""
    if nanos == 0:
        return "0"
    negative = nanos < 0
    magnitude = -nanos if negative else nanos
    sign = "-" if negative else ""
    if format == "BinarySI":
        if magnitude >= 1024 * NANO and magnitude % NANO == 0:
            units = magnitude // NANO
            power = 0
            while units >= 1024 and units % 1024 == 0:
                units //= 1024
                power += 10
            if power in _BINARY_BY_EXPONENT:
                return f"{sign}{decimal(units)}{_BINARY_BY_EXPONENT[power]}"
        format = "DecimalSI"  # too small, fractional or past Ei: exact decimal
    mantissa, exponent = _strip_tens(magnitude, -9)
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    if format != "DecimalSI":  # DecimalExponent; Go prints any unknown format the same way
        suffix = f"e{exponent}" if exponent else ""
    else:
        found = _DECIMAL_BY_EXPONENT.get(exponent)
        suffix = found if found is not None else f"e{exponent}"
    return f"{sign}{decimal(mantissa)}{suffix}"


# Units a group of figures may share, largest first: (nanos per unit, suffix).
_DECIMAL_UNITS = tuple(
    (10 ** (exponent + 9), suffix) for suffix, exponent in sorted(_DECIMAL_SUFFIXES.items(), key=lambda i: -i[1])
)
_BYTE_UNITS = tuple(
    sorted(
        [(NANO << power, suffix) for suffix, power in _BINARY_SUFFIXES.items()]
        + [(unit, suffix) for unit, suffix in _DECIMAL_UNITS if unit >= 1000 * NANO],
        reverse=True,
    )
)
_SMALL_BYTES = ((NANO, ""),)  # plain bytes, shared only while every figure has at most 6 digits


def canonical_together(values: list[int], format: Format) -> list[str]:
    """Print several figures of one message in one unit: `500m, 8600m of 10000m`, never `8600m of 10`.

    Each figure alone would print canonically (`canonical`), but a reader then
    compares `8600m` with `10` across units. Here they share the largest unit
    in which every one of them is exact, printed the way Kubernetes prints a
    quantity (digits and a suffix): for decimal figures that is always found
    (`n` at worst). Byte figures (`BinarySI`) share a binary or decimal suffix
    of at least `Ki`/`k` (`1024Mi, 512Mi of 2048Mi`); when none is exact for all
    of them (`1500M` against `2Gi`), a column of bare byte counts would be
    harder to read than mixed suffixes, so each keeps its own canonical form;
    bare bytes are shared only by small figures (`512 of 1000`, not `512 of 1k`).
    Zero prints as `0` in any unit. Figures that all print alike already (the
    common case: whole numbers) come out exactly as `canonical` prints them.
    """
    alone = [canonical(v, format) for v in values]
    suffixes = {text.lstrip("-0123456789") for text, v in zip(alone, values, strict=True) if v}
    if len(suffixes) <= 1:
        return alone
    nonzero = [abs(v) for v in values if v]
    units = _DECIMAL_UNITS
    if format == "BinarySI":
        units = _BYTE_UNITS + _SMALL_BYTES if max(nonzero) < _SMALL_BYTES[0][0] * 10**6 else _BYTE_UNITS
    for unit, suffix in units:
        if all(v % unit == 0 for v in nonzero):
            return [f"{'-' if v < 0 else ''}{decimal(abs(v) // unit)}{suffix}" if v else "0" for v in values]
    return alone


def _split(text: str) -> tuple[bool, str, str, str]:
    """parseQuantityString: sign, integer digits, fraction digits, suffix."""
    end = len(text)
    pos = 0
    positive = True
    if text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    whole = text[start:pos]
    fraction = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        fraction = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos != end:
        raise QuantityError(f"quantities must match the regular expression "
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
    return positive, whole, fraction, text[suffix_start:end]


def _suffix(suffix: str, text: str) -> tuple[int, int, Format]:
    """(base, exponent, format) for a suffix, or QuantityError."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], "DecimalSI"
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], "BinarySI"
    if len(suffix) > 1 and suffix[0] in "eE":
        digits = suffix[1:]
        body = digits[1:] if digits[:1] in ("+", "-") else digits
        if body.isdigit() and body.isascii():
            exponent = int(digits)
            if -_INT32 <= exponent <= _INT32:  # Kubernetes' scale is an int32
                return 10, exponent, "DecimalExponent"
    raise QuantityError(f"unable to parse quantity's suffix: {text!r}")


# The bounds of what is accepted. Kubernetes parses any decimal exponent that fits an int64
# (held as an int32 scale) into an unbounded inf.Dec, and has no length limit: a 4,400-digit
# value or "1e5000" is a valid Quantity to it, that its own int64 accessors (Value,
# MilliValue: the scheduler's and kubelet's) cannot represent. quotalang refuses both as
# invalid objects (denied in every failure mode, never charged). Kubernetes' own tables reach
# 2^63 × 10^100 and BinarySI is capped at 2^63-1, so a magnitude below 10^128 units keeps
# every value they hold, and leaves 10^180 of room for replicas (int64) and sums before a
# float (metrics, pages) or a message could overflow. MAX_LENGTH admits every canonical
# string of such a value (137 digits, a sign and a suffix) and no body-sized string (which
# would also fill the parse cache).
MAX_LENGTH = 160
MAX_DIGITS = 128  # |value| < 10^MAX_DIGITS units
_LIMIT_NANOS = 10 ** (MAX_DIGITS + 9)
_INT32 = 2**31 - 1


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:20]) + f"... ({len(text)} characters)"


def parse_quantity(text: str) -> Quantity:
    """ParseQuantity: exact nanos, rounded up (away from 0); BinarySI capped at 2^63-1.

    Past the bounds above (longer than MAX_LENGTH, or |value| ≥ 10^MAX_DIGITS) it is
    a QuantityError, like any malformed quantity.
    """
    if not isinstance(text, str):
        raise QuantityError(f"a quantity must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise QuantityError(f"quantity {_shown(text)} is longer than {MAX_LENGTH} characters")
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Quantity:
    if not text:
        raise QuantityError("quantities must match the regular expression: empty string")
    positive, whole, fraction, suffix = _split(text)
    base, exponent, fmt = _suffix(suffix, text)
    digits = int((whole or "0") + fraction)  # at most MAX_LENGTH digits
    if digits == 0:
        return Quantity(0, fmt)
    if base == 10:
        scale = exponent + 9 - len(fraction)
        size = len(str(digits))
        if size + scale > MAX_DIGITS + 9:  # digits * 10^scale >= 10^(size-1+scale)
            raise QuantityError(f"quantity {_shown(text)} is out of range: quotalang accepts "
                                f"magnitudes below 1e{MAX_DIGITS}")
        if scale >= 0:
            nanos = digits * 10**scale
        elif -scale >= size:  # below one nano: Kubernetes rounds it up to 1n
            nanos = 1
        else:
            nanos = -(-digits // 10**-scale)  # round up to the nearest nano
        if nanos >= _LIMIT_NANOS:
            raise QuantityError(f"quantity {_shown(text)} is out of range: quotalang accepts "
                                f"magnitudes below 1e{MAX_DIGITS}")
    else:
        numerator = digits * (NANO << exponent)
        nanos = -(-numerator // 10 ** len(fraction))
        if nanos > _MAX_NANOS:
            nanos = _MAX_NANOS
        if nanos < NANO:
            fmt = "DecimalSI"  # a fraction of a byte reads better in decimal
    return Quantity(nanos if positive else -nanos, fmt)


def resource_list(raw: Mapping[str, Any], where: str, invalid: type[InputError]) -> dict[str, Quantity]:
    """A ResourceList read from YAML/JSON (pods, LimitRanges): strings or numbers, parsed exactly, never
    negative. Errors are `invalid` (the object's own kind of error) and name `<where>.<resource>`."""
    out: dict[str, Quantity] = {}
    for name, value in raw.items():
        field = f"{where}.{name}"
        if isinstance(value, Quantity):
            quantity = value
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            text = repr(value)
            raise invalid(f"{field} is {text if len(text) <= 60 else text[:59] + '…'}, not a quantity")
        else:
            try:
                quantity = parse_quantity(value if isinstance(value, str) else repr(value))
            except QuantityError as exc:
                raise invalid(f"{field}: {exc}") from None
        if quantity.nanos < 0:
            raise invalid(f"{field} is {quantity}: must be greater than or equal to 0")
        out[str(name)] = quantity
    return out
