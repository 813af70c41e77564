"""The pygls wiring of `quotalang lsp`: documents in, analyses and answers out, over stdio.

A document belongs to the policy of its directory (all its `.quota` files
and their imports, as `lint DIR` reads it). Every open, change, save or close
re-analyses that directory with the open buffers' unsaved texts and publishes
diagnostics for each of its files (an empty list clears a fixed one).
Requests read the latest analysis (hover compiles it the first time it
needs the figures); navigation falls back to the last one that parsed while
a file is mid-edit. `initializationOptions: {"usage":
FILE}` names a usage snapshot (as `tree --usage`) for hover's used/free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from quotalang import __version__, nodes
from quotalang.errors import QuotalangError
from quotalang.evaluator import Snapshot
from quotalang.fmt import format_source
from quotalang.lsp import actions, completion, convert, hover, navigation
from quotalang.lsp.analysis import Analysis, analyse, compiled
from quotalang.lsp.index import Index


class QuotaServer(LanguageServer):
    """The policies' analyses by directory, the last index that parsed, and the optional usage snapshot."""

    def __init__(self) -> None:
        super().__init__("quotalang", __version__)
        self.analyses: dict[Path, Analysis] = {}
        self.indexes: dict[Path, Index] = {}
        self.published: dict[Path, set[str]] = {}
        self.usage: Snapshot | None = None
        self.parsed: dict[tuple[str, str], nodes.PolicyFile] = {}  # loader.load's memo
        self.load_usage: Callable[[str], Snapshot] = lambda path: Snapshot({}, {})

    def path_of(self, uri: str) -> Path:
        path = to_fs_path(uri)
        if path is None:
            raise ValueError(f"not a file URI: {uri}")
        return Path(path).resolve()

    def refresh(self, uri: str) -> Analysis:
        """Re-analyse the policy of `uri`'s directory and publish its diagnostics."""
        directory = self.path_of(uri).parent
        overlay = {self.path_of(d.uri): d.source for d in self.workspace.text_documents.values()
                   if d.uri.startswith("file:")}
        if len(self.parsed) > 4 * max(len(overlay), 64):  # old versions of edited files: start again
            self.parsed.clear()
        analysis = analyse(directory, overlay, self.usage, self.parsed)
        self.analyses[directory] = analysis
        if analysis.index is not None:
            self.indexes[directory] = analysis.index
        found = {u: d for u, d in convert.by_file(analysis, self.path_of(uri)).items() if d}
        # The document itself always (an empty list says "clean"), files with findings, and files whose
        # findings are gone; never one notice per clean imported file.
        for target in sorted({uri} | self.published.get(directory, set()) | set(found)):
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(target, found.get(target, [])))
        self.published[directory] = set(found)
        return analysis

    def at(self, uri: str) -> tuple[Analysis, Index | None, str]:
        """The analysis for `uri`, an index to navigate by, and the display name spans use for it."""
        path = self.path_of(uri)
        analysis = self.analyses.get(path.parent) or self.refresh(uri)
        index = analysis.index or self.indexes.get(path.parent)
        name = analysis.name_of(path)
        if name is None and index is not None:
            name = next((n for n in index.files if Path(n).resolve() == path), None)
        return analysis, index, name or str(path)


server = QuotaServer()


@server.feature(types.INITIALIZE)
def initialize(ls: QuotaServer, params: types.InitializeParams) -> None:
    options: Any = params.initialization_options
    usage = options.get("usage") if isinstance(options, dict) else None
    if isinstance(usage, str) and usage:
        try:
            ls.usage = ls.load_usage(usage)
        except QuotalangError as exc:
            ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"quotalang: usage: {exc}"))


DocumentEvent = (types.DidOpenTextDocumentParams | types.DidChangeTextDocumentParams
                 | types.DidSaveTextDocumentParams | types.DidCloseTextDocumentParams)


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def on_document(ls: QuotaServer, params: DocumentEvent) -> None:
    """Open, change, save, close: the policy's text changed (or its buffer now reads from disk)."""
    ls.refresh(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def on_hover(ls: QuotaServer, params: types.HoverParams) -> types.Hover | None:
    analysis, index, name = ls.at(params.text_document.uri)
    if analysis.compiled is None and analysis.sources is not None:
        # Compiled on the first hover after a change, not on every keystroke: diagnostics come first.
        analysis = ls.analyses[analysis.directory] = compiled(analysis)
    if analysis.index is None and index is not None:
        analysis = Analysis(analysis.directory, analysis.findings, analysis.texts, index, None, analysis.usage)
    return hover.hover(analysis, name, params.position.line + 1, params.position.character + 1)


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: QuotaServer, params: types.DefinitionParams) -> list[types.Location]:
    _, index, name = ls.at(params.text_document.uri)
    return navigation.definition(index, name, params.position.line + 1, params.position.character + 1) if index else []


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
def on_references(ls: QuotaServer, params: types.ReferenceParams) -> list[types.Location]:
    _, index, name = ls.at(params.text_document.uri)
    if index is None:
        return []
    return navigation.references(index, name, params.position.line + 1, params.position.character + 1,
                                 params.context.include_declaration)


@server.feature(types.TEXT_DOCUMENT_RENAME)
def on_rename(ls: QuotaServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
    _, index, name = ls.at(params.text_document.uri)
    if index is None:
        return None
    return navigation.rename(index, name, params.position.line + 1, params.position.character + 1, params.new_name)


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" ", "."]))
def on_completion(ls: QuotaServer, params: types.CompletionParams) -> types.CompletionList:
    _, index, name = ls.at(params.text_document.uri)
    document = ls.workspace.get_text_document(params.text_document.uri)
    line, character = params.position.line, params.position.character
    group = index.group_at(name, line + 1, character + 1) if index else None
    items = completion.complete(document.source, line, character, index, group.name if group else None)
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
def on_formatting(ls: QuotaServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
    document = ls.workspace.get_text_document(params.text_document.uri)
    try:
        formatted = format_source(document.source, document.path)
    except QuotalangError:
        return []  # a file that does not parse is left alone; its diagnostics say why
    if formatted == document.source:
        return []
    end = types.Position(len(document.lines), 0)
    return [types.TextEdit(types.Range(types.Position(0, 0), end), formatted)]


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
def on_code_action(ls: QuotaServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    _, index, name = ls.at(params.text_document.uri)
    text = ls.workspace.get_text_document(params.text_document.uri).source
    return actions.actions(params.text_document.uri, name, text, list(params.context.diagnostics), index)


def run(load_usage: Callable[[str], Snapshot]) -> None:
    """Serve on stdin/stdout until the client says exit; `load_usage` reads a snapshot file (the CLI's)."""
    server.load_usage = load_usage
    server.start_io()
