"""Readers of object fields that may be absent or malformed never raise."""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.objects import labels_of, name_of


@pytest.mark.parametrize(
    "obj",
    [None, {}, {"metadata": None}, {"metadata": []}, {"metadata": {"labels": None}}, {"metadata": {"labels": "x"}}],
)
def test_labels_of_anything_malformed_is_empty(obj: Any) -> None:
    assert labels_of(obj) == {}


def test_labels_of() -> None:
    assert labels_of({"metadata": {"labels": {"a": "b"}}}) == {"a": "b"}


def test_name_of() -> None:
    assert name_of({"metadata": {"namespace": "ns", "name": "web"}}) == "ns/web"
    assert name_of({"metadata": {"name": "node"}}) == "node"
    assert name_of({}) == "<unnamed>"
