"""Kubernetes' own quantity tables, transcribed from
`staging/src/k8s.io/apimachinery/pkg/api/resource/quantity_test.go`.

Go builds expected values as `decQuantity(i, exponent, format)`: the exact
value i × 10^exponent. We hold values in nano units, so `dec(i, e)` below is
i × 10^(e+9) nanos. Test ids name the Go test and the input.

Not transcribed, because they test Go internals with no counterpart in our
public API: TestDec/TestBigDec (inf.Dec printing), TestParseQuantityString and
TestInterpretExponentInt32Bounds (private parser pieces), TestQuantityRoundUp
(RoundUp), the inf.Dec/int64 backend switches (AsDec, AsInt64, DeepCopy), JSON,
CBOR and protobuf marshalling, NewScaledQuantity/ScaledValue, and
TestQuantityStringBelowNano (values below 1n, which no parse can produce).
"""

from __future__ import annotations

import pytest

from quotalang.quantity import Format, Quantity, QuantityError, parse_quantity

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
