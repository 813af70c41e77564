"""The `quotalang` command: lint, fmt, eval, tree, test, diff.

Exit codes: 0 ok / allowed, 1 findings / denied / would reformat, 2 usage or
input errors. No traceback reaches the user: our own errors print as
messages; anything else prints one line (set QUOTALANG_DEBUG=1 for the trace).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

from quotalang import loader
from quotalang.checker import check
from quotalang.compiler import compile_sources
from quotalang.decision import UsageSource
from quotalang.errors import Diagnostic, InputError, PolicyError, QuotalangError, UserInputError
from quotalang.evaluator import Snapshot, evaluate
from quotalang.limitranges import LimitRanges, limit_range_documents
from quotalang.policy import CompiledPolicy

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
_CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class UsageError(UserInputError):
    """Bad command-line input (exit 2)."""


def _json(data: Any, out: TextIO) -> None:
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def read_yaml(path: str) -> list[Any]:
    """Every document of a YAML or JSON file (`-` reads stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: not valid YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # an integer past 4,300 digits; nesting past Python's stack
        problem = "nests too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise InputError(f"{path}: cannot read: {problem}") from None


def read_one(path: str, what: str) -> dict[str, Any]:
    docs = read_yaml(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InputError(f"{path}: expected one {what} object, found {len(docs)} documents")
    return docs[0]


def load_policy(paths: Sequence[str]) -> CompiledPolicy:
    return compile_sources(loader.load(list(paths)))


def load_snapshot(path: str | None) -> Snapshot:
    if path is None:
        return Snapshot({}, {})
    docs = read_yaml(path)
    if len(docs) > 1:
        raise InputError(f"{path}: a usage snapshot is one document")
    return Snapshot.parse(docs[0] if docs else {})


# ------------------------------------------------------------------- lint
def _missing_path(raw: str) -> UsageError:
    """A path that does not exist, with the near names beside it (a typo, most likely)."""
    path = Path(raw)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        siblings = [p.name for p in parent.iterdir()] if parent.is_dir() else []
    except OSError:
        siblings = []
    near = difflib.get_close_matches(path.name, siblings, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(str(parent / n) for n in near)}?)" if near else ""
    return UsageError(f"no such file or directory: {raw}{hint}")


def cmd_lint(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 1 for findings; 2 for a path that does not exist (input, not a finding)."""
    for raw in args.paths:
        if not Path(raw).exists():
            raise _missing_path(raw)
    findings: list[Diagnostic]
    texts: dict[str, str] = {}
    kinds: list[str] = []
    sources: loader.Sources | None = None
    try:
        sources = loader.load(args.paths)
        texts = sources.texts
        findings = check(sources)
        kinds = sorted(f"{r.api_version} {r.kind}" for f in sources.files for r in f.kinds)
    except PolicyError as exc:
        findings, texts = list(exc.diagnostics), exc.sources
    errors = sum(d.severity == "error" for d in findings)
    if args.format == "json":
        _json([d.as_json() for d in findings], out)
    elif args.format == "sarif":
        from quotalang.sarif import sarif_log

        _json(sarif_log(findings, texts, sources), out)
    elif args.format == "github":
        for d in findings:
            level = "error" if d.severity == "error" else "warning"
            where = f"file={d.span.file},line={d.span.line},col={d.span.column}," if d.span else ""
            out.write(f"::{level} {where}title={d.code}::{d.message}\n")
    else:
        for d in findings:
            out.write(d.render(texts) + "\n")
        warnings = len(findings) - errors
        out.write(f"{errors} error(s), {warnings} warning(s)\n" if findings else "ok: no findings\n")
        if args.list_kinds:
            out.write("kinds covered:\n" + "".join(f"  {k}\n" for k in kinds))
    return EXIT_FINDINGS if errors else EXIT_OK


# ------------------------------------------------------------------- fmt
def _policy_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.rglob("*.quota")))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"no such file or directory: {raw}")
    return files


def cmd_fmt(args: argparse.Namespace, out: TextIO) -> int:
    from quotalang.fmt import format_source, unified_diff

    changed: list[str] = []
    for path in _policy_files(args.paths):
        text = path.read_text(encoding="utf-8")
        formatted = format_source(text, str(path))
        if formatted == text:
            continue
        changed.append(str(path))
        if args.diff:
            out.write(unified_diff(text, formatted, str(path)))
        elif not args.check:
            path.write_text(formatted, encoding="utf-8")
    if args.format == "json":
        _json({"changed": changed, "written": not (args.check or args.diff)}, out)
    elif args.check and not args.diff:
        for name in changed:
            out.write(f"would reformat {name}\n")
    elif not args.diff:
        for name in changed:
            out.write(f"reformatted {name}\n")
    return EXIT_FINDINGS if changed and (args.check or args.diff) else EXIT_OK


# ------------------------------------------------------------------- eval
def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "<unnamed>") if isinstance(meta, dict) else "<unnamed>"
    return f"{obj.get('kind', '?')} {name} ({obj.get('apiVersion', '?')})"


def load_limit_ranges(paths: Sequence[str] | None) -> LimitRanges | None:
    """`--limit-range FILE`s: LimitRanges that apply to the workload whatever its namespace."""
    if not paths:
        return None
    found: list[Mapping[str, Any]] = []
    for path in paths:
        found.extend(limit_range_documents(read_yaml(path), path))
    ranges = tuple(found)
    return lambda namespace: ranges


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 2 with one line naming the file, the document and the field when an object is invalid."""
    policy = load_policy(args.policy)
    snapshot = load_snapshot(args.usage)
    old = read_one(args.old, "old") if args.old else None
    parent = read_one(args.parent, "parent") if args.parent else None
    limit_ranges = load_limit_ranges(args.limit_range)
    operation = args.operation or ("UPDATE" if old is not None else "CREATE")
    results = []
    denied = False
    for index, obj in enumerate(read_yaml(args.workload)):
        where = f"{args.workload}: document {index}"
        if not isinstance(obj, dict):
            raise InputError(f"{where}: not an object")
        missing = [f for f in ("apiVersion", "kind") if not isinstance(obj.get(f), str) or not obj.get(f)]
        if missing:
            raise InputError(f"{where}: no {' or '.join(missing)}: not a Kubernetes object")
        try:
            decision = evaluate(policy, obj, operation, old=old, usage=snapshot, parent=parent,
                                limit_ranges=limit_ranges)
        except UserInputError as exc:
            raise InputError(f"{where} ({_describe(obj)}): {exc}") from None
        denied = denied or not decision.allowed
        results.append((obj, decision))
    if not results:
        raise InputError(f"{args.workload}: no object to evaluate")
    if args.format == "json":
        payload = [{"object": _describe(o), **d.as_json()} for o, d in results]
        _json(payload[0] if len(payload) == 1 else payload, out)
    else:
        for obj, d in results:
            verdict = "ALLOWED" if d.allowed else "DENIED"
            where = f" in {d.path} (mode {d.mode})" if d.path else ""
            out.write(f"{verdict}  {d.operation} {_describe(obj)}{where}\n")
            if d.message:
                out.write(f"  {d.message}\n")
            for warning in d.warnings:
                out.write(f"  warning: {warning}\n")
            if d.total:
                shown = ", ".join(f"{k} {q}" for k, q in d.usage.items())
                out.write(f"  usage: {shown}\n")
            for line in d.explanation():
                out.write(f"  {line}\n")
    return EXIT_FINDINGS if denied else EXIT_OK


# ------------------------------------------------------------------- tree
def cmd_tree(args: argparse.Namespace, out: TextIO) -> int:
    from quotalang.tree import render_tree, tree_json

    policy = load_policy(args.policy)
    usage = tree_usage(args.usage or [])
    unknown = sorted(_snapshot_groups(usage) - set(policy.groups))
    if unknown:
        near = {name: policy.near_groups(name) for name in unknown}
        listed = "; ".join(f"{n} (did you mean {', '.join(near[n])}?)" if near[n] else n for n in unknown)
        raise UsageError(f"--usage names groups the policy does not have: {listed}")
    if args.format == "json":
        _json(tree_json(policy, usage), out)
    else:
        out.write(render_tree(policy, usage, with_usage=bool(args.usage)))
    return EXIT_OK


def _snapshot_groups(usage: UsageSource) -> set[str]:
    """The groups a snapshot (or each cluster's) names: usage of a group the policy lacks would vanish."""
    from quotalang.tree import ClusterUsage

    if isinstance(usage, ClusterUsage):
        return set().union(*(_snapshot_groups(u) for u in usage.clusters.values()))
    return set(usage.groups()) if isinstance(usage, Snapshot) else set()


def tree_usage(values: Sequence[str]) -> UsageSource:
    """`--usage FILE` (once), or `--usage NAME=FILE` per cluster, summed (quotalang.tree.ClusterUsage).

    A value that names an existing file is a plain snapshot even if it holds
    a `=`; otherwise `NAME=FILE` with NAME a cluster name (a DNS label).
    """
    from quotalang.tree import ClusterUsage

    plain: list[str] = []
    named: dict[str, Snapshot] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or Path(value).is_file():
            plain.append(value)
            continue
        if not _CLUSTER_NAME.fullmatch(name) or len(name) > 63:
            raise UsageError(f"--usage {value}: {name!r} is not a cluster name (a DNS label: lowercase letters, "
                             "digits and '-'); give --usage FILE, or --usage NAME=FILE per cluster")
        if name in named:
            raise UsageError(f"--usage {name}=... is given twice: one snapshot per cluster")
        named[name] = load_snapshot(path)
    if plain and named:
        raise UsageError("--usage takes one FILE, or NAME=FILE per cluster, not both: name every snapshot")
    if len(plain) > 1:
        raise UsageError("--usage FILE is one snapshot: for several clusters give --usage NAME=FILE for each")
    if named:
        return ClusterUsage(named)
    return load_snapshot(plain[0] if plain else None)


# ------------------------------------------------------------------- test
def cmd_test(args: argparse.Namespace, out: TextIO) -> int:
    import re

    from quotalang.policytest import Runner, report

    pattern = None
    if args.run is not None:
        try:
            pattern = re.compile(args.run)
        except re.error as exc:
            raise UsageError(f"--run {args.run!r} is not a regular expression: {exc}") from None
    result = Runner(args.policy, pattern).run(args.paths)
    if not result.results:
        raise UsageError(f"no case matches --run {args.run!r}")
    render: dict[str, Callable[[], str]] = {
        "text": lambda: report.text(result, args.verbose, args.coverage),
        "json": lambda: report.as_json(result, args.coverage),
        "junit": lambda: report.junit(result),
        "github": lambda: report.github(result),
    }
    if args.output:
        try:
            Path(args.output).write_text(render[args.format](), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        out.write(render["text"]())
    else:
        out.write(render[args.format]())
    return EXIT_OK if result.ok else EXIT_FINDINGS


# ------------------------------------------------------------------- diff
def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    from quotalang import policydiff

    if args.git is not None and len(args.dirs) != 1:
        raise UsageError("diff --git REV takes one policy directory: the working tree's")
    if args.git is None and len(args.dirs) != 2:
        raise UsageError("diff takes two policy directories, OLD and NEW (or --git REV DIR)")
    snapshot = load_snapshot(args.usage) if args.usage else None
    with policydiff.temporary_dir() as tmp:
        if args.git is not None:
            new_dir = args.dirs[0]
            copy = policydiff.checkout(args.git, new_dir, Path(tmp))
            old_name = f"{new_dir}@{args.git}"
            # A directory absent at REV (the policy's first pull request) is an empty policy.
            old = loader.Sources((), {}) if copy is None else loader.load(str(copy))
        else:
            old_dir, new_dir = args.dirs
            old_name = old_dir
            old = loader.load(old_dir)
        result = policydiff.diff(old, loader.load(new_dir), snapshot)
    if args.format == "json":
        _json(policydiff.as_json(result), out)
    else:
        out.write(policydiff.render_text(result, old_name, new_dir, snapshot is not None))
    return EXIT_FINDINGS if result.problems else EXIT_OK


# ------------------------------------------------------------------- lsp
def cmd_lsp(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from quotalang.lsp.service import run
    except ImportError as exc:
        raise UsageError(f"quotalang lsp needs the lsp extra: pip install 'quotalang[lsp]' ({exc})") from None
    run(load_snapshot)
    return EXIT_OK


# ------------------------------------------------------------------- main
Command = Callable[[argparse.Namespace, TextIO], int]


class Verbs:
    """The verb table of the `quotalang` parser, handed to each extension of `build_parser`.

    How another package adds verbs (`quotalang.server` adds `serve` and
    `manifests`) without reaching into argparse or replacing the core parser.
    """

    def __init__(self, add_parser: Callable[..., argparse.ArgumentParser]) -> None:
        self._add_parser = add_parser

    def add(
        self,
        name: str,
        helptext: str,
        func: Command,
        formats: tuple[str, ...] = ("text", "json"),
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        """A new verb running `func(args, out)`; `--format` takes `formats` (none when empty)."""
        sub = self._add_parser(name, help=helptext, description=description or helptext)
        if formats:
            sub.add_argument("--format", choices=formats, default=formats[0])
        sub.set_defaults(func=func)
        return sub


Extension = Callable[[Verbs], None]


def build_parser(*extensions: Extension) -> argparse.ArgumentParser:
    """The parser of the core verbs, then of the verbs each extension adds."""
    parser = argparse.ArgumentParser(
        prog="quotalang", description="Hierarchical quotas for Kubernetes, as code."
    )
    parser.add_argument("--version", action="version", version="quotalang 0.1.0")
    verbs = Verbs(parser.add_subparsers(dest="verb", required=True, metavar="VERB").add_parser)
    verb = verbs.add

    lint = verb("lint", "check a policy: syntax, tree, carving, names, kind rules", cmd_lint,
                ("text", "json", "github", "sarif"))
    lint.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    lint.add_argument("--list-kinds", action="store_true", help="also list the kinds the policy charges")

    fmt = verb("fmt", "rewrite policy files in the canonical layout (keeps comments)", cmd_fmt)
    fmt.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    fmt.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    fmt.add_argument("--diff", action="store_true", help="write nothing; print a unified diff")

    ev = verb("eval", "explain the decision for a workload", cmd_eval)
    ev.add_argument("workload", metavar="WORKLOAD", help="YAML/JSON file ('-' for stdin)")
    ev.add_argument("--policy", action="append", required=True, metavar="DIR")
    ev.add_argument("--usage", metavar="FILE", help="usage snapshot {group: {key: quantity}}")
    ev.add_argument("--old", metavar="FILE", help="the stored object, for an UPDATE")
    ev.add_argument("--parent", metavar="FILE", help="the scaled workload, for a Scale or HPA")
    ev.add_argument("--operation", type=str.upper, choices=["CREATE", "UPDATE"])
    ev.add_argument("--limit-range", action="append", metavar="FILE",
                    help="the namespace's LimitRanges (YAML/JSON, repeatable): their container defaults apply first")

    tree = verb("tree", "show the group tree with hard / carved / free per key", cmd_tree)
    tree.add_argument("--policy", action="append", required=True, metavar="DIR")
    tree.add_argument("--usage", action="append", metavar="[NAME=]FILE",
                      help="usage snapshot {group: {key: quantity}}; NAME=FILE per cluster (repeatable, summed)")

    test = verb("test", "run policy tests (*.test.yaml): chained admissions with expected decisions", cmd_test,
                ("text", "json", "junit", "github"))
    test.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="test files or directories")
    test.add_argument("--policy", action="append", metavar="DIR", help="test this policy instead of the files' own")
    test.add_argument("--run", metavar="PATTERN", help="only report cases whose FILE::NAME matches this regex")
    test.add_argument("-v", "--verbose", action="store_true", help="show the decision of passing cases too")
    test.add_argument("--coverage", action="store_true", help="groups and kind rules exercised and never touched")
    test.add_argument("--output", metavar="FILE", help="write the report here; a text report goes to stdout")

    diff = verb("diff", "review a policy change: groups added, removed, moved; limits changed; usage stranded",
                cmd_diff)
    diff.add_argument("dirs", nargs="+", metavar="DIR", help="OLD NEW, or with --git only the working-tree DIR")
    diff.add_argument("--git", metavar="REV", help="compare DIR as it was at this git revision with the working tree")
    diff.add_argument("--usage", metavar="FILE", help="usage snapshot: report groups over their new limits")
    lsp = verb("lsp", "a language server for .quota files over stdio (the lsp extra; see docs/editors.md)", cmd_lsp,
               ())
    lsp.add_argument("--stdio", action="store_true", help="accepted for editors that pass it: stdio is the transport")
    for extend in extensions:
        extend(verbs)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, extensions: Sequence[Extension] = ()) -> int:
    """Run one verb: the core ones, plus those `extensions` add (see `build_parser`)."""
    stream = out or sys.stdout
    parser = build_parser(*extensions)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage message
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_USAGE
    try:
        return int(args.func(args, stream))
    except PolicyError as exc:
        sys.stderr.write(exc.render() + "\n")
        return EXIT_USAGE
    except QuotalangError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the promise: no traceback for users
        if os.environ.get("QUOTALANG_DEBUG"):
            raise
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc} (QUOTALANG_DEBUG=1 shows more)\n")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
