"""One exception hierarchy: what the user got wrong, apart from what went wrong inside."""

from __future__ import annotations

import pytest

from quotalang.cli import UsageError
from quotalang.errors import (
    InputError,
    InternalError,
    PolicyError,
    QuantityError,
    QuotalangError,
    ReviewError,
    UserInputError,
)
from quotalang.policytest.spec import SpecError
from quotalang.policytest.yamlsrc import LocatedError
from quotalang.quantity import parse_quantity


@pytest.mark.parametrize(
    "cls", [PolicyError, InputError, QuantityError, ReviewError, SpecError, LocatedError, UsageError]
)
def test_user_input_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, UserInputError)
    assert issubclass(cls, QuotalangError)
    assert not issubclass(cls, InternalError)


def test_internal_errors_are_not_user_input() -> None:
    assert issubclass(InternalError, QuotalangError)
    assert not issubclass(InternalError, UserInputError)


def test_a_quantity_error_is_still_a_value_error() -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity("lots")
    with pytest.raises(UserInputError):
        parse_quantity("lots")


def test_the_facade_exports_the_bases() -> None:
    import quotalang

    assert quotalang.UserInputError is UserInputError
    assert quotalang.InternalError is InternalError
    assert quotalang.QuantityError is QuantityError
