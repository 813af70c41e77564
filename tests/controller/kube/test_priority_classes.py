"""The PriorityClass index (issue 29): names to values, "" to the global default, as the watcher feeds it."""

from __future__ import annotations

from typing import Any

from quotalang.controller.kube.priority_classes import PriorityClassIndex


def klass(name: str, value: Any, default: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name}, "value": value, **({"globalDefault": True} if default else {})}


def test_values_by_name_and_the_global_default() -> None:
    index = PriorityClassIndex()
    assert index("batch") is None and index("") is None  # nothing listed yet: unknown
    index.replace("priorityclasses", [klass("batch", 10), klass("high", 1000), klass("normal", 50, default=True)])
    assert (index("batch"), index("high"), index(""), len(index)) == (10, 1000, 50, 3)
    index.apply("priorityclasses", "MODIFIED", klass("batch", 20))
    index.apply("priorityclasses", "DELETED", klass("normal", 50, default=True))
    assert (index("batch"), index("normal"), index("")) == (20, None, None)


def test_a_class_without_an_integer_value_is_unknown() -> None:
    index = PriorityClassIndex()
    index.replace("priorityclasses", [klass("odd", "10"), klass("flag", True), klass("", 5)])
    assert (index("odd"), index("flag"), index("")) == (None, None, None)
