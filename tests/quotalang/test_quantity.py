"""Kubernetes' own quantity tables, transcribed from
`staging/src/k8s.io/apimachinery/pkg/api/resource/quantity_test.go`.

Go builds expected values as `decQuantity(i, exponent, format)`: the exact
value i × 10^exponent. We hold values in nano units, so `dec(i, e)` below is
i × 10^(e+9) nanos. Test ids name the Go test and the input.

Not transcribed, because they test Go internals with no counterpart in our
public API: TestDec/TestBigDec (inf.Dec printing), TestParseQuantityString and
TestInterpretExponentInt32Bounds (private parser pieces), TestQuantityRoundUp
(RoundUp), the int64/inf.Dec backend flags (AsInt64, AsDec, the `ok` results of
TestMul and amount_test.go's Add/Mul/AsInt64, TestAmountSign, DeepCopy), JSON,
CBOR and protobuf marshalling, floats (AsApproximateFloat64, AsFloat64Slow),
QuantityValue/pflag, QuantityPtrEqual, and values below 1n, which no parse can
produce (TestQuantityStringBelowNano, the sub-nano rows of
TestQuantityCmpInt64AndDec, TestAddSubRoundTripAcrossScales' scales below -9,
TestMostNegativeAtUnrepresentableScaleStaysInt64's int32 scale wrap).

One known difference: Go accepts decimal exponents up to ±(2^31-1) (an inf.Dec
with that scale) and strings of any length; we refuse a magnitude of 10^128
units or more, or a string over 160 characters, with a QuantityError (tiny
exponents still round up to 1n, as in Go): see test_quantity_bounds.py.
"""

from __future__ import annotations

import pytest

from quotalang.quantity import Format, Quantity, QuantityError, canonical_together, parse_quantity

MAX_ALLOWED = 2**63 - 1  # `maxAllowed`: where Kubernetes caps a BinarySI value
MOST_NEGATIVE = -(2**63)


def dec(i: int, exponent: int) -> int:
    """The nanos of `decQuantity(i, exponent, _)` (exact: every table value is whole nanos)."""
    if exponent >= -9:
        return i * int(10 ** (exponent + 9))
    unit = int(10 ** (-9 - exponent))
    assert i % unit == 0
    return i // unit


def q(i: int, exponent: int, fmt: Format) -> Quantity:
    return Quantity.from_nanos(dec(i, exponent), fmt)


# ------------------------------------------------------------------ TestQuantityParse
PARSE: list[tuple[str, int, Format]] = [
    ("0", dec(0, 0), "DecimalSI"),
    ("0n", dec(0, 0), "DecimalSI"),
    ("0u", dec(0, 0), "DecimalSI"),
    ("0m", dec(0, 0), "DecimalSI"),
    ("0Ki", dec(0, 0), "BinarySI"),
    ("0k", dec(0, 0), "DecimalSI"),
    ("0Mi", dec(0, 0), "BinarySI"),
    ("0M", dec(0, 0), "DecimalSI"),
    ("0Gi", dec(0, 0), "BinarySI"),
    ("0G", dec(0, 0), "DecimalSI"),
    ("0Ti", dec(0, 0), "BinarySI"),
    ("0T", dec(0, 0), "DecimalSI"),
    # Quantity less numbers are allowed
    ("1", dec(1, 0), "DecimalSI"),
    # Binary suffixes
    ("1Ki", dec(1024, 0), "BinarySI"),
    ("8Ki", dec(8 * 1024, 0), "BinarySI"),
    ("7Mi", dec(7 * 1024**2, 0), "BinarySI"),
    ("6Gi", dec(6 * 1024**3, 0), "BinarySI"),
    ("5Ti", dec(5 * 1024**4, 0), "BinarySI"),
    ("4Pi", dec(4 * 1024**5, 0), "BinarySI"),
    ("3Ei", dec(3 * 1024**6, 0), "BinarySI"),
    ("10Ti", dec(10 * 1024**4, 0), "BinarySI"),
    ("100Ti", dec(100 * 1024**4, 0), "BinarySI"),
    # Decimal suffixes
    ("5n", dec(5, -9), "DecimalSI"),
    ("4u", dec(4, -6), "DecimalSI"),
    ("3m", dec(3, -3), "DecimalSI"),
    ("9", dec(9, 0), "DecimalSI"),
    ("8k", dec(8, 3), "DecimalSI"),
    ("50k", dec(5, 4), "DecimalSI"),
    ("7M", dec(7, 6), "DecimalSI"),
    ("6G", dec(6, 9), "DecimalSI"),
    ("5T", dec(5, 12), "DecimalSI"),
    ("40T", dec(4, 13), "DecimalSI"),
    ("300T", dec(3, 14), "DecimalSI"),
    ("2P", dec(2, 15), "DecimalSI"),
    ("1E", dec(1, 18), "DecimalSI"),
    # Decimal exponents
    ("1E-3", dec(1, -3), "DecimalExponent"),
    ("1e3", dec(1, 3), "DecimalExponent"),
    ("1E6", dec(1, 6), "DecimalExponent"),
    ("1e9", dec(1, 9), "DecimalExponent"),
    ("1E12", dec(1, 12), "DecimalExponent"),
    ("1e15", dec(1, 15), "DecimalExponent"),
    ("1E18", dec(1, 18), "DecimalExponent"),
    # Nonstandard but still parsable
    ("1e14", dec(1, 14), "DecimalExponent"),
    ("1e13", dec(1, 13), "DecimalExponent"),
    ("1e3", dec(1, 3), "DecimalExponent"),
    ("100.035k", dec(100035, 0), "DecimalSI"),
    # Things that look like floating point
    ("0.001", dec(1, -3), "DecimalSI"),
    ("0.0005k", dec(5, -1), "DecimalSI"),
    ("0.005", dec(5, -3), "DecimalSI"),
    ("0.05", dec(5, -2), "DecimalSI"),
    ("0.5", dec(5, -1), "DecimalSI"),
    ("0.00050k", dec(5, -1), "DecimalSI"),
    ("0.00500", dec(5, -3), "DecimalSI"),
    ("0.05000", dec(5, -2), "DecimalSI"),
    ("0.50000", dec(5, -1), "DecimalSI"),
    ("0.5e0", dec(5, -1), "DecimalExponent"),
    ("0.5e-1", dec(5, -2), "DecimalExponent"),
    ("0.5e-2", dec(5, -3), "DecimalExponent"),
    ("0.5e0", dec(5, -1), "DecimalExponent"),
    ("10.035M", dec(10035, 3), "DecimalSI"),
    ("1.2e3", dec(12, 2), "DecimalExponent"),
    ("1.3E+6", dec(13, 5), "DecimalExponent"),
    ("1.40e9", dec(14, 8), "DecimalExponent"),
    ("1.53E12", dec(153, 10), "DecimalExponent"),
    ("1.6e15", dec(16, 14), "DecimalExponent"),
    ("1.7E18", dec(17, 17), "DecimalExponent"),
    ("9.01", dec(901, -2), "DecimalSI"),
    ("8.1k", dec(81, 2), "DecimalSI"),
    ("7.123456M", dec(7123456, 0), "DecimalSI"),
    ("6.987654321G", dec(6987654321, 0), "DecimalSI"),
    ("5.444T", dec(5444, 9), "DecimalSI"),
    ("40.1T", dec(401, 11), "DecimalSI"),
    ("300.2T", dec(3002, 11), "DecimalSI"),
    ("2.5P", dec(25, 14), "DecimalSI"),
    ("1.01E", dec(101, 16), "DecimalSI"),
    # Things that saturate/round
    ("3.001n", dec(4, -9), "DecimalSI"),
    ("1.1E-9", dec(2, -9), "DecimalExponent"),
    ("0.0000000001", dec(1, -9), "DecimalSI"),
    ("0.0000000005", dec(1, -9), "DecimalSI"),
    ("0.00000000050", dec(1, -9), "DecimalSI"),
    ("0.5e-9", dec(1, -9), "DecimalExponent"),
    ("0.9n", dec(1, -9), "DecimalSI"),
    ("0.00000012345", dec(124, -9), "DecimalSI"),
    ("0.00000012354", dec(124, -9), "DecimalSI"),
    ("9Ei", dec(MAX_ALLOWED, 0), "BinarySI"),
    ("9223372036854775807Ki", dec(MAX_ALLOWED, 0), "BinarySI"),
    ("12E", dec(12, 18), "DecimalSI"),
    # We'll accept fractional binary stuff, too.
    ("100.035Ki", dec(10243584, -2), "BinarySI"),
    ("0.5Mi", dec(512 * 1024, 0), "BinarySI"),
    ("0.05Gi", dec(536870912, -1), "BinarySI"),
    ("0.025Ti", dec(274877906944, -1), "BinarySI"),
    # Things written by trolls
    ("0.000000000001Ki", dec(2, -9), "DecimalSI"),  # rounds up, changes format
    (".001", dec(1, -3), "DecimalSI"),
    (".0001k", dec(100, -3), "DecimalSI"),
    ("1.", dec(1, 0), "DecimalSI"),
    ("1.G", dec(1, 9), "DecimalSI"),
]


@pytest.mark.parametrize(("text", "nanos", "fmt"), PARSE, ids=[f"TestQuantityParse/{t}" for t, _, _ in PARSE])
def test_parse(text: str, nanos: int, fmt: Format) -> None:
    got = parse_quantity(text)
    assert (got.nanos, got.format) == (nanos, fmt)
    # "Try the negative version of everything" and "everything with an explicit +".
    negative = parse_quantity("-" + text)
    assert (negative.nanos, negative.format) == (-nanos, fmt)
    positive = parse_quantity("+" + text)
    assert (positive.nanos, positive.format) == (nanos, fmt)
    # The canonical string parses back to the same value.
    assert parse_quantity(str(got)) == got


INVALID = [
    "",
    "1.1.M",
    "1+1.0M",
    "0.1mi",
    "0.1am",
    "aoeu",
    ".5i",
    "1i",
    "-3.01i",
    "-3.01e-",
    "1e4294967297",  # an exponent outside the int32 scale is rejected, not truncated
    " 1",  # whitespace is forbidden
    "1 ",
    "Non-Numeric",  # TestQuantityParseNonNumericPanic
]


@pytest.mark.parametrize("text", INVALID, ids=[f"TestQuantityParse/invalid/{t!r}" for t in INVALID])
def test_invalid(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
    assert issubclass(QuantityError, ValueError)


# ------------------------------------------------------------------ canonical strings
STRING: list[tuple[int, int, Format, str, str]] = [
    (1024**3, 0, "BinarySI", "1Gi", "1024Mi"),
    (300 * 1024**2, 0, "BinarySI", "300Mi", "307200Ki"),
    (6 * 1024, 0, "BinarySI", "6Ki", ""),
    (1001 * 1024**3, 0, "BinarySI", "1001Gi", "1025024Mi"),
    (1024**4, 0, "BinarySI", "1Ti", "1024Gi"),
    (5, 0, "BinarySI", "5", "5000m"),
    (500, -3, "BinarySI", "500m", "0.5"),
    (1, 9, "DecimalSI", "1G", "1000M"),
    (1000, 6, "DecimalSI", "1G", "0.001T"),
    (1000000, 3, "DecimalSI", "1G", ""),
    (1000000000, 0, "DecimalSI", "1G", ""),
    (1, -3, "DecimalSI", "1m", "1000u"),
    (80, -3, "DecimalSI", "80m", ""),
    (1080, -3, "DecimalSI", "1080m", "1.08"),
    (108, -2, "DecimalSI", "1080m", "1080000000n"),
    (10800, -4, "DecimalSI", "1080m", ""),
    (300, 6, "DecimalSI", "300M", ""),
    (1, 12, "DecimalSI", "1T", ""),
    # DecimalSI has no suffix beyond E: larger exponents fall back to e-notation.
    (1, 18, "DecimalSI", "1E", ""),
    (1, 21, "DecimalSI", "1e21", "1000E"),
    (5, 21, "DecimalSI", "5e21", "5000E"),
    (1, 24, "DecimalSI", "1e24", "1000000E"),
    # BinarySI has no suffix beyond Ei: an exact decimal form instead.
    (1, 70, "BinarySI", "10e69", ""),
    (2, 70, "BinarySI", "20e69", ""),
    (1, 72, "BinarySI", "1e72", ""),
    (1234567, 6, "DecimalSI", "1234567M", ""),
    (1234567, -3, "BinarySI", "1234567m", ""),
    (3, 3, "DecimalSI", "3k", ""),
    (1025, 0, "BinarySI", "1025", ""),
    (0, 0, "DecimalSI", "0", ""),
    (0, 0, "BinarySI", "0", ""),
    (1, 9, "DecimalExponent", "1e9", ".001e12"),
    (1, -3, "DecimalExponent", "1e-3", "0.001e0"),
    (1, -9, "DecimalExponent", "1e-9", "1000e-12"),
    (80, -3, "DecimalExponent", "80e-3", ""),
    (300, 6, "DecimalExponent", "300e6", ""),
    (1, 12, "DecimalExponent", "1e12", ""),
    (1, 3, "DecimalExponent", "1e3", ""),
    (3, 3, "DecimalExponent", "3e3", ""),
    (3, 3, "DecimalSI", "3k", ""),
    (0, 0, "DecimalExponent", "0", "00"),
    (1, -9, "DecimalSI", "1n", ""),
    (80, -9, "DecimalSI", "80n", ""),
    (1080, -9, "DecimalSI", "1080n", ""),
    (108, -8, "DecimalSI", "1080n", ""),
    (10800, -10, "DecimalSI", "1080n", ""),
    (1, -6, "DecimalSI", "1u", ""),
    (80, -6, "DecimalSI", "80u", ""),
    (1080, -6, "DecimalSI", "1080u", ""),
]


@pytest.mark.parametrize(
    ("i", "exponent", "fmt", "expect", "alternate"), STRING,
    ids=[f"TestQuantityString/{e}" for _, _, _, e, _ in STRING],
)
def test_string(i: int, exponent: int, fmt: Format, expect: str, alternate: str) -> None:
    value = q(i, exponent, fmt)
    assert str(value) == expect
    assert parse_quantity(expect) == value
    if alternate:
        assert str(parse_quantity(alternate)) == expect
    if value.nanos:
        assert str(-value) == "-" + expect  # "Don't expect it to print -0 ever"


PARSE_EMIT = [
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    ("1Gi", "1Gi"),
    ("1024Mi", "1Gi"),
    ("1000M", "1G"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),
]


@pytest.mark.parametrize(("text", "expect"), PARSE_EMIT, ids=[f"TestQuantityParseEmit/{t}" for t, _ in PARSE_EMIT])
def test_parse_emit(text: str, expect: str) -> None:
    assert str(parse_quantity(text)) == expect
    assert str(parse_quantity("-" + text)) == "-" + expect


def test_parse_zero() -> None:  # TestQuantityParseZero
    assert str(parse_quantity("0")) == "0"


def test_binary_si_past_ei_round_trip() -> None:  # TestBinarySIPastEiArithmeticRoundTrip
    value = parse_quantity("1Ei") * 1024  # 2^70
    assert str(value) == "1180591620717411303424"
    assert parse_quantity(str(value)) == value
    assert sum((parse_quantity("1Ei") for _ in range(1024)), Quantity.zero()) == value


@pytest.mark.parametrize("nanos", [2000 * 10**9, -2000 * 10**9])
def test_binary_si_zero_exponent_string(nanos: int) -> None:  # TestBinarySIZeroExponentString
    assert str(Quantity.from_nanos(nanos, "BinarySI")) == ("2000" if nanos > 0 else "-2000")


# ------------------------------------------------------------------ comparison and arithmetic
CMP = [("0", "0", 0), ("100m", "50m", 1), ("50m", "100m", -1), ("10000T", "100Gi", 1)]


@pytest.mark.parametrize(("x", "y", "expect"), CMP, ids=[f"TestQuantityCmp/{x}-{y}" for x, y, _ in CMP])
def test_cmp(x: str, y: str, expect: int) -> None:
    a, b = parse_quantity(x), parse_quantity(y)
    assert ((a > b) - (a < b)) == expect
    assert (a == b) == (expect == 0)


CMP_INT64_AND_DEC = [  # TestQuantityCmpInt64AndDec: the rows whose values are whole nanos
    ((901, -2), (901, -2), 0),
    ((90, -1), (901, -2), -1),
    ((901, -2), (900, -2), 1),
    ((0, 0), (0, 0), 0),
    ((0, 1), (0, -1), 0),
    ((0, -1), (0, 1), 0),
    ((800, -3), (1, 0), -1),
    ((800, -3), (79, -2), 1),
    ((2**63 - 1, 0), (1, -1), 1),
    ((2**63 - 1, 1), (1, 0), 1),
    ((2**63 - 1, 1), (1, 1), 1),
    ((2**63 - 1, 1), (0, 1), 1),
    ((MOST_NEGATIVE, 0), (0, 0), -1),
    ((10**18, -17), (1, 1), 0),
    ((10**18, -17), (-10, 0), 1),
    ((-(10**18), -17), (-10, 0), 0),
    ((10**18, -17), (1, 0), 1),
]


@pytest.mark.parametrize(("a", "b", "expect"), CMP_INT64_AND_DEC)
def test_cmp_int64_and_dec(a: tuple[int, int], b: tuple[int, int], expect: int) -> None:
    x, y = q(*a, "DecimalSI"), q(*b, "DecimalSI")
    assert ((x > y) - (x < y)) == expect
    assert ((y > x) - (y < x)) == -expect


@pytest.mark.parametrize("text", ["100m", "1Gi"])
def test_add_and_sub_zero_preserve_the_suffix(text: str) -> None:  # Test...ZeroPreservesSuffix
    value, zero = parse_quantity(text), parse_quantity("0")
    assert str(value + zero) == text
    assert str(zero + value) == text
    assert str(value - zero) == text
    assert str(zero - value) == str(-value) == "-" + text


def test_neg() -> None:  # TestQuantityNeg, TestNeg
    assert str(-q(901, -2, "DecimalSI")) == "-9010m"
    assert -q(10, 0, "BinarySI") == q(-10, 0, "BinarySI")
    assert -q(-10, 0, "BinarySI") == q(10, 0, "BinarySI")
    assert -q(0, 0, "DecimalSI") == q(0, 0, "DecimalSI")


SUB: list[tuple[tuple[int, int, Format], tuple[int, int, Format], tuple[int, int, Format]]] = [
    ((10, 0, "DecimalSI"), (1, 1, "DecimalSI"), (0, 0, "DecimalSI")),
    ((10, 0, "DecimalSI"), (1, 0, "BinarySI"), (9, 0, "DecimalSI")),
    ((10, 0, "BinarySI"), (1, 0, "DecimalSI"), (9, 0, "BinarySI")),
    ((0, 0, "DecimalSI"), (50, 0, "DecimalSI"), (-50, 0, "DecimalSI")),
    ((50, 0, "DecimalSI"), (0, 0, "DecimalSI"), (50, 0, "DecimalSI")),
    ((0, 0, "DecimalSI"), (0, 0, "DecimalSI"), (0, 0, "DecimalSI")),
]


@pytest.mark.parametrize(("a", "b", "expect"), SUB, ids=[f"TestSub/{i}" for i in range(len(SUB))])
def test_sub(a: tuple[int, int, Format], b: tuple[int, int, Format], expect: tuple[int, int, Format]) -> None:
    assert q(*a) - q(*b) == q(*expect)


def test_neg_and_sub_at_most_negative() -> None:  # TestNegAndSubAtMostNegative
    most_negative = q(MOST_NEGATIVE, 0, "DecimalSI")
    assert str(-most_negative) == "9223372036854775808"
    assert str(Quantity.zero() - most_negative) == "9223372036854775808"
    assert str(q(1, 0, "DecimalSI") - most_negative) == "9223372036854775809"
    assert str(-q(MOST_NEGATIVE, -3, "DecimalSI")) == "9223372036854775808m"
    assert str(q(1, -3, "DecimalSI") - q(MOST_NEGATIVE, -3, "DecimalSI")) == "9223372036854775809m"


# ------------------------------------------------------------------ Value / MilliValue
ROUNDING = [  # TestNegativeValueRoundsAwayFromZero
    ("-.484785E-7466", -1, -1),
    (".484785E-7466", 1, 1),
    ("-.484785E-1", -1, -49),
    (".484785E-1", 1, 49),
    ("-0.0005", -1, -1),
    ("0.0005", 1, 1),
    ("-1500m", -2, -1500),
    ("1500m", 2, 1500),
    ("-9.5000000001Gi", -10200547329, -10200547328108),
    ("9.5000000001Gi", 10200547329, 10200547328108),
    ("-1", -1, -1000),
    ("1", 1, 1000),
    ("0", 0, 0),
]


@pytest.mark.parametrize(("text", "value", "milli"), ROUNDING, ids=[t for t, _, _ in ROUNDING])
def test_value_and_milli_value_round_away_from_zero(text: str, value: int, milli: int) -> None:
    parsed = parse_quantity(text)
    assert parsed.value() == value
    assert parsed.milli_value() == milli


MILLI_NEW_SET = [(1, "DecimalSI", "1m"), (1000, "DecimalSI", "1"), (1234000, "DecimalSI", "1234"),
                 (1024, "BinarySI", "1024m"), (1024 * 1024, "BinarySI", "1048576m")]


@pytest.mark.parametrize(("milli", "fmt", "expect"), MILLI_NEW_SET)
def test_milli_quantities(milli: int, fmt: Format, expect: str) -> None:  # TestMilliNewSet
    value = Quantity.from_nanos(milli * 10**6, fmt)
    assert str(value) == expect
    assert parse_quantity(str(value)).milli_value() == milli


NEW_SET = [(1, "DecimalSI", "1"), (1000, "DecimalSI", "1k"), (1234000, "DecimalSI", "1234k"),
           (1024, "BinarySI", "1Ki"), (1024 * 1024, "BinarySI", "1Mi")]


@pytest.mark.parametrize(("units", "fmt", "expect"), NEW_SET)
def test_whole_quantities(units: int, fmt: Format, expect: str) -> None:  # TestNewSet
    value = Quantity.from_nanos(units * 10**9, fmt)
    assert str(value) == expect
    assert parse_quantity(str(value)).value() == units


# ------------------------------------------------------------------ more of quantity_test.go
def test_quantity_canonicalize_zero() -> None:  # TestQuantityCanocicalizeZero: 1000m - 1 prints "0", not "0m"
    assert str(parse_quantity("1000m") - parse_quantity("1")) == "0"


CMP_NIL = [(0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 10, -1), (0, -10, 1), (10, 0, 1), (-10, 0, -1)]


@pytest.mark.parametrize(("x", "y", "expect"), CMP_NIL, ids=[f"TestQuantityCmp/table2/{i}" for i in range(8)])
def test_cmp_nil_dec(x: int, y: int, expect: int) -> None:  # a nil inf.Dec is zero
    a, b = q(x, 0, "DecimalSI"), q(y, 0, "DecimalSI")
    assert ((a > b) - (a < b)) == expect


# TestParseQuantity: (input, the exact value Go's AsDec gives, canonical String() when it differs from the input)
PARSE_QUANTITY: list[tuple[str, str, str]] = [
    # min/max 18 digits
    ("-999999999999999999", "-999999999999999999", ""),
    ("999999999999999999", "999999999999999999", ""),
    ("-999999999999999999.0", "-999999999999999999", "-999999999999999999"),
    ("999999999999999999.0", "999999999999999999", "999999999999999999"),
    ("-999999999999999999.1", "-999999999999999999.1", "-999999999999999999100m"),
    ("999999999999999999.1", "999999999999999999.1", "999999999999999999100m"),
    # min/max 19 digits
    ("-9999999999999999999", "-9999999999999999999", ""),
    ("9999999999999999999", "9999999999999999999", ""),
    ("-1E", "-1000000000000000000", ""),
    ("1E", "1000000000000000000", ""),
    ("-1000000000000000000", "-1000000000000000000", "-1E"),
    ("1000000000000000000", "1000000000000000000", "1E"),
    ("-9999999999999999999.0", "-9999999999999999999", "-9999999999999999999"),
    ("9999999999999999999.0", "9999999999999999999", "9999999999999999999"),
    ("-1.0E", "-1000000000000000000", "-1E"),
    ("1.0E", "1000000000000000000", "1E"),
    ("-1000000000000000000.0", "-1000000000000000000", "-1E"),
    ("1000000000000000000.0", "1000000000000000000", "1E"),
    ("-9999999999999999999000m", "-9999999999999999999", "-9999999999999999999"),
    ("9999999999999999999000m", "9999999999999999999", "9999999999999999999"),
    ("-9999999999999999999.1", "-9999999999999999999.1", "-9999999999999999999100m"),
    ("9999999999999999999.1", "9999999999999999999.1", "9999999999999999999100m"),
    ("-1.0000000000000000001E", "-1000000000000000000.1", "-1000000000000000000100m"),
    ("1.0000000000000000001E", "1000000000000000000.1", "1000000000000000000100m"),
    ("-1000000000000000000.1", "-1000000000000000000.1", "-1000000000000000000100m"),
    ("1000000000000000000.1", "1000000000000000000.1", "1000000000000000000100m"),
    ("-1.000000000000000001E", "-1000000000000000001", "-1000000000000000001"),
    ("1.000000000000000001E", "1000000000000000001", "1000000000000000001"),
    ("-1000000000000000001", "-1000000000000000001", ""),
    ("1000000000000000001", "1000000000000000001", ""),
    # min/max 20 digits
    ("-10E", "-10000000000000000000", ""),
    ("10E", "10000000000000000000", ""),
    ("-10000000000000000000", "-10000000000000000000", "-10E"),
    ("10000000000000000000", "10000000000000000000", "10E"),
    ("-10.0E", "-10000000000000000000", "-10E"),
    ("10.0E", "10000000000000000000", "10E"),
    ("-10000000000000000000.0", "-10000000000000000000", "-10E"),
    ("10000000000000000000.0", "10000000000000000000", "10E"),
    ("-10000000000000000000000m", "-10000000000000000000", "-10E"),
    ("10000000000000000000000m", "10000000000000000000", "10E"),
    ("-10.0000000000000000001E", "-10000000000000000000.1", "-10000000000000000000100m"),
    ("10.0000000000000000001E", "10000000000000000000.1", "10000000000000000000100m"),
    ("-10000000000000000000.1", "-10000000000000000000.1", "-10000000000000000000100m"),
    ("10000000000000000000.1", "10000000000000000000.1", "10000000000000000000100m"),
    ("-10.000000000000000001E", "-10000000000000000001", "-10000000000000000001"),
    ("10.000000000000000001E", "10000000000000000001", "10000000000000000001"),
    ("-10000000000000000001", "-10000000000000000001", ""),
    ("10000000000000000001", "10000000000000000001", ""),
    # min/max int64 - 1
    ("-9223372036854775809", "-9223372036854775809", ""),
    ("9223372036854775806", "9223372036854775806", ""),
    ("-9223372036854775809.0", "-9223372036854775809", "-9223372036854775809"),
    ("9223372036854775806.0", "9223372036854775806", "9223372036854775806"),
    ("-9223372036854775809000m", "-9223372036854775809", "-9223372036854775809"),
    ("9223372036854775806000m", "9223372036854775806", "9223372036854775806"),
    ("-9223372036854775809.1", "-9223372036854775809.1", "-9223372036854775809100m"),
    ("9223372036854775806.1", "9223372036854775806.1", "9223372036854775806100m"),
    # min/max int64
    ("-9223372036854775808", "-9223372036854775808", ""),
    ("9223372036854775807", "9223372036854775807", ""),
    ("-9223372036854775808.0", "-9223372036854775808", "-9223372036854775808"),
    ("9223372036854775807.0", "9223372036854775807", "9223372036854775807"),
    ("-9223372036854775808000m", "-9223372036854775808", "-9223372036854775808"),
    ("9223372036854775807000m", "9223372036854775807", "9223372036854775807"),
    ("-9223372036854775808.1", "-9223372036854775808.1", "-9223372036854775808100m"),
    ("9223372036854775807.1", "9223372036854775807.1", "9223372036854775807100m"),
    # min/max int64 + 1
    ("-9223372036854775807", "-9223372036854775807", ""),
    ("9223372036854775808", "9223372036854775808", ""),
    ("-9223372036854775807.0", "-9223372036854775807", "-9223372036854775807"),
    ("9223372036854775808.0", "9223372036854775808", "9223372036854775808"),
    ("-9223372036854775807000m", "-9223372036854775807", "-9223372036854775807"),
    ("9223372036854775808000m", "9223372036854775808", "9223372036854775808"),
    ("-9223372036854775807.1", "-9223372036854775807.1", "-9223372036854775807100m"),
    ("9223372036854775808.1", "9223372036854775808.1", "9223372036854775808100m"),
]


def exact_nanos(decimal: str) -> int:
    """The nanos of a plain decimal string (at most 9 fraction digits), computed without the parser."""
    negative = decimal.startswith("-")
    whole, _, fraction = decimal.lstrip("-").partition(".")
    nanos = int(whole) * 10**9 + int((fraction + "0" * 9)[:9])
    return -nanos if negative else nanos


@pytest.mark.parametrize(("text", "dec", "canonical"), PARSE_QUANTITY,
                         ids=[f"TestParseQuantity/{t}" for t, _, _ in PARSE_QUANTITY])
def test_parse_quantity_large_numbers(text: str, dec: str, canonical: str) -> None:
    parsed = parse_quantity(text)
    assert parsed.nanos == exact_nanos(dec)
    assert str(parsed) == (canonical or text)


@pytest.mark.parametrize("text", ["9223372036854775807", "9223372036854775806", "9223372036854775808"],
                         ids=lambda t: f"TestMustParseNearMaxInt64/{t}")
def test_must_parse_near_max_int64(text: str) -> None:
    assert str(parse_quantity(text)) == text
    assert parse_quantity(text).value() == int(text)


ADD: list[tuple[tuple[int, int, Format], tuple[int, int, Format], tuple[int, int, Format]]] = [
    ((10, 0, "DecimalSI"), (1, 1, "DecimalSI"), (20, 0, "DecimalSI")),
    ((10, 0, "DecimalSI"), (1, 0, "BinarySI"), (11, 0, "DecimalSI")),
    ((10, 0, "BinarySI"), (1, 0, "DecimalSI"), (11, 0, "BinarySI")),
    ((0, 0, "DecimalSI"), (50, 0, "DecimalSI"), (50, 0, "DecimalSI")),
    ((50, 0, "DecimalSI"), (0, 0, "DecimalSI"), (50, 0, "DecimalSI")),
    ((0, 0, "DecimalSI"), (0, 0, "DecimalSI"), (0, 0, "DecimalSI")),
]


@pytest.mark.parametrize(("a", "b", "expect"), ADD, ids=[f"TestAdd/{i}" for i in range(len(ADD))])
def test_add(a: tuple[int, int, Format], b: tuple[int, int, Format], expect: tuple[int, int, Format]) -> None:
    assert q(*a) + q(*b) == q(*expect)


def go_div(a: int, b: int) -> int:
    """Go's integer division truncates toward zero."""
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


MP, MN = MAX_ALLOWED, MOST_NEGATIVE
# TestMul: (a, a's exponent, format, factor, exact product). Go's `ok` says whether the product fits an int64 —
# its backend, not the value; we check the value.
MUL: list[tuple[int, int, Format, int, int]] = [
    (10, 0, "DecimalSI", 10, 100), (10, 0, "DecimalSI", 1, 10), (10, 0, "BinarySI", 1, 10),
    (0, 0, "DecimalSI", 50, 0), (50, 0, "DecimalSI", 0, 0), (0, 0, "DecimalSI", 0, 0),
    (10, 0, "DecimalSI", -10, -100), (-10, 0, "DecimalSI", 1, -10), (10, 0, "BinarySI", -1, -10),
    (-50, 0, "DecimalSI", 0, 0), (-50, 0, "DecimalSI", -50, 2500), (0, 0, "DecimalSI", -50, 0),
    (MP, 0, "DecimalSI", 0, 0), (MP, 0, "DecimalSI", 1, MP), (MP, 0, "DecimalSI", -1, -MP),
    (go_div(MP, 2), 0, "DecimalSI", 2, go_div(MP, 2) * 2), (go_div(MP, -2), 0, "DecimalSI", -2, go_div(MP, 2) * 2),
    (MP, 0, "DecimalSI", 2, MP * 2), (MP, 0, "DecimalSI", 10, MP * 10), (MP, 0, "DecimalSI", -10, -MP * 10),
    (MN, 0, "DecimalSI", 0, 0), (MN, 0, "DecimalSI", 1, MN), (MN, 0, "DecimalSI", -1, MP + 1),
    (go_div(MN, 2), 0, "DecimalSI", 2, MN), (go_div(MN, -2), 0, "DecimalSI", -2, MN),
    (MN, 0, "DecimalSI", 2, MN * 2), (MN, 0, "DecimalSI", 10, MN * 10), (MN, 0, "DecimalSI", -10, (MP + 1) * 10),
]


@pytest.mark.parametrize(("i", "exponent", "fmt", "factor", "product"), MUL,
                         ids=[f"TestMul/{n}" for n in range(len(MUL))])
def test_mul(i: int, exponent: int, fmt: Format, factor: int, product: int) -> None:
    got = q(i, exponent, fmt) * factor
    assert got == q(product, 0, "DecimalSI")
    assert parse_quantity(str(got)) == got


def test_neg_of_zero_value() -> None:  # TestNeg: Quantity{} negates to Quantity{}
    assert -Quantity.zero() == Quantity.zero()
    assert str(-Quantity.zero()) == "0"


def test_sub_most_negative_cross_scale() -> None:  # TestSubMostNegativeCrossScale
    assert str(q(1, 1, "DecimalSI") - q(MN, 0, "DecimalSI")) == "9223372036854775818"


def test_zero_sub_most_negative_inherits_format() -> None:  # TestZeroSubMostNegativeInheritsFormat
    got = Quantity(0, "DecimalSI") - q(MN, 0, "BinarySI")
    assert got.format == "BinarySI"
    assert str(got) == "8Ei"
    assert got == parse_quantity("9223372036854775808")
    # "8Ei" itself parses to the BinarySI cap (#140674), one less than 2^63.
    assert parse_quantity("8Ei") == q(MAX_ALLOWED, 0, "BinarySI")


def test_zero_sub_most_negative_preserves_scale() -> None:  # TestZeroSubMostNegativePreservesScale
    got = Quantity.zero() - q(MN, 100, "DecimalSI")
    assert got.nanos == 2**63 * 10 ** (100 + 9)
    assert parse_quantity(str(got)) == got


def test_add_sub_round_trip() -> None:  # TestAddSubRoundTrip: scales -9..10 (ours hold whole nanos)
    import random
    rng = random.Random(0)
    for k in range(-9, 11):
        total = Quantity.zero()
        order = [rng.randrange(2**63) for _ in range(100)]
        for j in order:
            total = total + q(j, k, "DecimalSI")
        for j in order:
            total = total - q(j, k, "DecimalSI")
        assert total.is_zero()


MILLI_INVALID = Quantity.from_nanos(1000000 * 10**6, "invalidFormatDefaultsToExponent")  # type: ignore[arg-type]
WHOLE_INVALID = Quantity.from_nanos(1000000 * 10**9, "invalidFormatDefaultsToExponent")  # type: ignore[arg-type]


def test_invalid_format_defaults_to_exponent() -> None:  # TestMilliNewSet / TestNewSet rows
    assert str(MILLI_INVALID) == "1e3"
    assert parse_quantity(str(MILLI_INVALID)).milli_value() == 1000000
    assert str(WHOLE_INVALID) == "1e6"
    assert parse_quantity(str(WHOLE_INVALID)).value() == 1000000


NANO_, MICRO, MILLI = -9, -6, -3
NEW_SCALED_SET = [(1, NANO_, "1n"), (1000, NANO_, "1u"), (1, MICRO, "1u"), (1000, MICRO, "1m"), (1, MILLI, "1m"),
                  (1000, MILLI, "1"), (1, 0, "1"), (0, NANO_, "0"), (0, MICRO, "0"), (0, MILLI, "0"), (0, 0, "0")]


@pytest.mark.parametrize(("value", "scale", "expect"), NEW_SCALED_SET,
                         ids=[f"TestNewScaledSet/{v}e{s}" for v, s, _ in NEW_SCALED_SET])
def test_new_scaled_set(value: int, scale: int, expect: str) -> None:
    quantity = q(value, scale, "DecimalSI")  # NewScaledQuantity: DecimalSI
    assert str(quantity) == expect
    assert parse_quantity(str(quantity)).scaled_value(scale) == value


SCALED_VALUE = [(NANO_, NANO_, 1), (NANO_, MICRO, 1), (NANO_, MILLI, 1), (NANO_, 0, 1),
                (MICRO, NANO_, 1000), (MICRO, MICRO, 1), (MICRO, MILLI, 1), (MICRO, 0, 1),
                (MILLI, NANO_, 1000 * 1000), (MILLI, MICRO, 1000), (MILLI, MILLI, 1), (MILLI, 0, 1),
                (0, NANO_, 1000 * 1000 * 1000), (0, MICRO, 1000 * 1000), (0, MILLI, 1000), (0, 0, 1),
                (2, -2, 100 * 100)]


@pytest.mark.parametrize(("from_scale", "to_scale", "expect"), SCALED_VALUE,
                         ids=[f"TestScaledValue/{f}->{t}" for f, t, _ in SCALED_VALUE])
def test_scaled_value(from_scale: int, to_scale: int, expect: int) -> None:
    assert q(1, from_scale, "DecimalSI").scaled_value(to_scale) == expect


# amount_test.go: TestInt64AsCanonicalString (value, scale, canonical mantissa+suffix) and the
# TestInt64AmountAsScaledInt64 rows that do not overflow an int64 (rounded away from zero).
CANONICAL_INT64 = [(100, 0, "100"), (100, 1, "1k"), (100, -1, "10"), (10800, -10, "1080n")]


@pytest.mark.parametrize(("value", "scale", "expect"), CANONICAL_INT64,
                         ids=[f"TestInt64AsCanonicalString/{v}e{s}" for v, s, _ in CANONICAL_INT64])
def test_int64_as_canonical_string(value: int, scale: int, expect: str) -> None:
    assert str(q(value, scale, "DecimalSI")) == expect


AS_SCALED = [
    ("test when i.scale < scaled ", 100, 0, 5, 1),
    ("test when i.scale = scaled", 100, 1, 1, 100),
    ("test when i.scale > scaled and result doesn't overflow", 100, 5, 2, 100000),
    ("test when i.scale < 0 and fraction exists", 93, -1, 0, 10),
    ("test when i.scale < 0 and fraction doesn't exist", 100, -1, 0, 10),
    ("test when i.value < 0 and fraction exists", -1932, 2, 4, -20),
    ("test when i.value < 0 and fraction doesn't exists", -1900, 2, 4, -19),
]


@pytest.mark.parametrize(("value", "scale", "to", "expect"), [r[1:] for r in AS_SCALED],
                         ids=[f"TestInt64AmountAsScaledInt64/{r[0]}" for r in AS_SCALED])
def test_as_scaled_value(value: int, scale: int, to: int, expect: int) -> None:
    assert q(value, scale, "DecimalSI").scaled_value(to) == expect


@pytest.mark.parametrize(
    ("values", "fmt", "expected"),
    [
        # the largest unit every figure is exact in; zero is `0` in any unit
        (["500m", "8600m", "10", "0"], "DecimalSI", ["500m", "8600m", "10000m", "0"]),
        (["2k", "10k"], "DecimalSI", ["2k", "10k"]),
        (["1500", "10k"], "DecimalSI", ["1500", "10000"]),
        (["1n", "1"], "DecimalSI", ["1n", "1000000000n"]),
        (["-500m", "2"], "DecimalSI", ["-500m", "2000m"]),
        (["1Gi", "512Mi", "2Gi"], "BinarySI", ["1024Mi", "512Mi", "2048Mi"]),
        # 2G alone prints 1953125Ki (as Kubernetes' BinarySI does); 1Gi joins it in Ki
        (["2G", "1Gi"], "BinarySI", ["1953125Ki", "1048576Ki"]),
        (["1500M", "2Gi"], "BinarySI", ["1500000000", "2Gi"]),  # as canonical prints each alone
        (["512", "1Ki"], "BinarySI", ["512", "1024"]),  # small: bare bytes
        (["21", "0", "16"], "DecimalSI", ["21", "0", "16"]),  # alike already: as canonical
    ],
)
def test_canonical_together_prints_one_unit(values: list[str], fmt: Format, expected: list[str]) -> None:
    nanos = [parse_quantity(v).nanos for v in values]
    assert canonical_together(nanos, fmt) == expected
