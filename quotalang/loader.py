"""Read a policy from disk: a directory's `*.quota` files plus what they import.

`import "x.quota"` and `import "dir"` resolve against the importing file;
`import "quotalang:policies"` names the shipped kind library (`policies/`),
wherever quotalang is installed. Every file is read once, however often it is
imported.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from quotalang import nodes
from quotalang.errors import Diagnostic, PolicyError
from quotalang.parser import parse

LIBRARY_PREFIX = "quotalang:policies"


@dataclass(frozen=True, slots=True)
class Sources:
    """Every parsed file of one policy, and the text of each (for carets)."""

    files: tuple[nodes.PolicyFile, ...]
    texts: dict[str, str]


def library_dir() -> Path:
    """The folder holding the shipped kind rules."""
    try:
        return Path(str(resources.files("quotalang.policies")))
    except ModuleNotFoundError:  # a source checkout on sys.path, not installed
        return Path(__file__).resolve().parent.parent / "policies"


def _quota_files(directory: Path) -> list[Path]:
    """Every `*.quota` entry that is not a directory: a dangling, looping or unreadable one is
    listed too, so that reading it fails and names it (skipping it loaded the policy without
    its groups, and a reload reported success)."""
    return sorted(p for p in directory.iterdir() if p.suffix == ".quota" and not p.is_dir())


def _unreadable(path: Path, exc: OSError) -> str:
    """Why `path` cannot be read, in words; a symlink says where it points."""
    name = _display(path)
    if path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        if exc.errno == errno.ELOOP:
            why = "loops"
        elif isinstance(exc, FileNotFoundError):
            why = "points to nothing"
        else:
            why = f"cannot be read: {exc.strerror or exc}"
        return f"{name} is a symlink to {target!r} that {why}"
    return f"cannot read {name}: {exc.strerror or exc}"


def _display(path: Path) -> str:
    """A path relative to the working directory when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("../../..") else str(path)


def load(
    paths: list[str] | str,
    overlay: Mapping[Path, str] | None = None,
    memo: MutableMapping[tuple[str, str], nodes.PolicyFile] | None = None,
) -> Sources:
    """Parse every file of the policy; raise `PolicyError` with all the problems.

    For `quotalang lsp`: `overlay` maps resolved paths to texts read instead
    of the disk's (an editor's unsaved buffers); `memo`, kept by the caller,
    holds the trees of (name, text) already parsed (trees are immutable), so
    a change re-parses only the files that changed.
    """
    unsaved = overlay or {}
    trees = memo if memo is not None else {}
    roots = [paths] if isinstance(paths, str) else list(paths)
    texts: dict[str, str] = {}
    files: list[nodes.PolicyFile] = []
    problems: list[Diagnostic] = []
    seen: set[Path] = set()

    def read(path: Path, origin: nodes.Span | None) -> None:
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            real = path.absolute()
        if real in seen:
            return
        seen.add(real)
        name = _display(path)
        try:
            text = unsaved[real] if real in unsaved else path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(Diagnostic("E005", _unreadable(path, exc), origin,
                                       "fix or remove the file: the policy is not loaded without it"))
            return
        except UnicodeDecodeError as exc:
            problems.append(Diagnostic("E005", f"cannot read {name}: {exc}", origin))
            return
        texts[name] = text
        parsed = trees.get((name, text))
        if parsed is None:
            try:
                parsed = trees[(name, text)] = parse(text, name)
            except PolicyError as exc:
                problems.extend(exc.diagnostics)
                return
        files.append(parsed)
        for imp in parsed.imports:
            target = resolve_import(imp.target, path.parent)
            if target is None or not target.exists():
                problems.append(
                    Diagnostic(
                        "E004",
                        f"cannot find import {imp.target!r}",
                        imp.span,
                        "imports are relative to the importing file; "
                        f'"{LIBRARY_PREFIX}" names the shipped kind rules',
                    )
                )
                continue
            visit(target, imp.span)

    def visit(path: Path, origin: nodes.Span | None) -> None:
        if path.is_dir():
            found = _quota_files(path)
            if not found and origin is not None:
                problems.append(Diagnostic("E006", f"no .quota files in {_display(path)}", origin))
            for file in found:
                read(file, origin)
        else:
            read(path, origin)

    for root in roots:
        path = Path(root)
        if not path.exists():
            problems.append(Diagnostic("E005", f"no such file or directory: {root}", None))
            continue
        if path.is_dir() and not _quota_files(path):
            problems.append(
                Diagnostic("E006", f"no .quota files in {root}", None, "point at a policy directory")
            )
            continue
        visit(path, None)
    if problems:
        raise PolicyError(problems, texts)
    return Sources(tuple(files), texts)


def resolve_import(target: str, base: Path) -> Path | None:
    if target.startswith(LIBRARY_PREFIX):
        rest = target[len(LIBRARY_PREFIX) :].lstrip("/")
        return library_dir() / rest if rest else library_dir()
    if target.startswith("quotalang:"):
        return None
    return base / target


def load_text(text: str, filename: str = "<policy>") -> Sources:
    """A one-file policy from a string (tests, `eval --policy -`); imports resolve from the cwd."""
    parsed = parse(text, filename)
    files = [parsed]
    texts = {filename: text}
    if parsed.imports:
        targets = []
        for imp in parsed.imports:
            target = resolve_import(imp.target, Path("."))
            if target is None or not target.exists():
                raise PolicyError([Diagnostic("E004", f"cannot find import {imp.target!r}", imp.span)], texts)
            targets.append(str(target))
        more = load(targets)
        files.extend(more.files)
        texts.update(more.texts)
    return Sources(tuple(files), texts)
