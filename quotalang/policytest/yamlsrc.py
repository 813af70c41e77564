"""Read YAML and remember where every value came from.

A failing case must be reported at its own line (GitHub annotations, JUnit
`line=`), and a bad field must be named as `file:line`: so the test file is
composed into nodes first, their start lines recorded by path, then built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from quotalang.errors import InputError

PathKey = tuple[str | int, ...]


class LocatedError(InputError):
    """An input problem at a line of a file: `file:line: message`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class Located:
    """A YAML document and the 1-based line of every mapping key / list item in it."""

    __slots__ = ("data", "file", "lines")

    def __init__(self, data: Any, file: str, lines: dict[PathKey, int]) -> None:
        self.data = data
        self.file = file
        self.lines = lines

    def line(self, path: PathKey) -> int:
        """The line of `path`, else of its nearest located ancestor."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def where(self, path: PathKey) -> str:
        return f"{self.file}:{self.line(path)}"


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            lines[(*path, name)] = key.start_mark.line + 1
            _walk(value, (*path, name), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def _problem(file: str, exc: yaml.YAMLError) -> LocatedError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return LocatedError(file, 1, f"not valid YAML: {problem}")
    return LocatedError(file, mark.line + 1, f"not valid YAML: {problem} (column {mark.column + 1})")


def parse_located(text: str, file: str) -> Located:
    """One YAML document with its lines; `InputError` names file:line:col."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[PathKey, int] = {}
        if node is None:
            return Located(None, file, lines)
        _walk(node, (), lines)
        return Located(loader.construct_document(node), file, lines)
    except yaml.composer.ComposerError as exc:
        if "single document" in str(exc):
            line = exc.problem_mark.line + 1 if exc.problem_mark else 1
            raise LocatedError(file, line, "a test file is one YAML document (found a second '---')") from None
        raise _problem(file, exc) from None
    except yaml.YAMLError as exc:
        raise _problem(file, exc) from None
    finally:
        loader.dispose()


def read_text(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LocatedError(shown, 1, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LocatedError(shown, 1, "not UTF-8 text") from None


def read_documents(path: Path, shown: str) -> list[Any]:
    """Every non-empty document of a YAML/JSON file (a workload or snapshot)."""
    text = read_text(path, shown)
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise _problem(shown, exc) from None
    except (ValueError, RecursionError) as exc:  # an integer past 4,300 digits; nesting past Python's stack
        problem = "nests too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise LocatedError(shown, 1, f"cannot read: {problem}") from None
