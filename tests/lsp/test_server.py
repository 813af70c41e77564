"""`quotalang lsp` driven over stdio by pytest-lsp's client: each answer asserted exactly, by hand."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

QUOTALANG = str(Path(sys.executable).parent / "quotalang")

# Line numbers below are 0-based, as LSP counts them.
POLICY = """\
import "quotalang:policies"

group root {
  requests.cpu   10
  limits.memory  8Gi
}

group team in root {
  requests.cpu   4
  limits.memory  2Gi
  namespaces     "team"
}
"""


INITIALIZED: dict[int, types.InitializeResult] = {}


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def rng(line: int, start: int, end: int, end_line: int | None = None) -> types.Range:
    return types.Range(pos(line, start), pos(line if end_line is None else end_line, end))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[QUOTALANG, "lsp", "--stdio"]))
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    INITIALIZED[id(lsp_client)] = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities()))
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "org.quota"
    path.write_text(POLICY)
    return path


async def open_doc(client: LanguageClient, path: Path, text: str) -> str:
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="quota", version=1, text=text)))
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri


async def change(client: LanguageClient, uri: str, version: int, text: str) -> list[types.Diagnostic]:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [types.TextDocumentContentChangeWholeDocument(text=text)]))
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return client.diagnostics[uri]


@pytest.mark.asyncio
async def test_initialize_announces_what_it_answers(client: LanguageClient) -> None:
    result = INITIALIZED[id(client)]
    assert result is not None and result.server_info is not None
    assert (result.server_info.name, result.server_info.version) == ("quotalang", "0.1.0")
    caps = result.capabilities
    assert caps.hover_provider and caps.definition_provider and caps.references_provider
    assert caps.rename_provider and caps.document_formatting_provider
    assert caps.completion_provider is not None and caps.completion_provider.trigger_characters == (" ", ".")
    assert caps.code_action_provider == types.CodeActionOptions(code_action_kinds=("quickfix",))


@pytest.mark.asyncio
async def test_an_over_allocation_appears_and_disappears(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, POLICY)
    assert client.diagnostics[uri] == ()
    found = await change(client, uri, 2, POLICY.replace("requests.cpu   4", "requests.cpu   12"))
    assert found == (types.Diagnostic(
        range=rng(3, 2, 14),
        message="children of root over-allocate requests.cpu: 12 > 10 (team 12)\n"
                "hint: lower the children's requests.cpu or raise root's: "
                "the parent keeps hard − Σ children for its own workloads",
        severity=types.DiagnosticSeverity.Error,
        code="E105",
        source="quotalang",
        related_information=(types.DiagnosticRelatedInformation(
            types.Location(uri, rng(8, 2, 19)), "team's share: 12"),),
        data={"hint": "lower the children's requests.cpu or raise root's: "
                      "the parent keeps hard − Σ children for its own workloads"},
    ),)
    assert await change(client, uri, 3, POLICY) == ()


@pytest.mark.asyncio
async def test_hover_on_a_group_shows_its_room_per_key(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, POLICY)
    result = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos(2, 7)))
    assert result == types.Hover(
        types.MarkupContent(types.MarkupKind.Markdown,
                            "**group root** · `root` · mode enforce\n\nchildren: team\n\n"
                            "| key | hard | carved | own room |\n|---|---|---|---|\n"
                            "| `requests.cpu` | 10 | 4 | 6 |\n"
                            "| `limits.memory` | 8Gi | 2Gi | 6Gi |"),
        rng(2, 6, 10))


@pytest.mark.asyncio
async def test_hover_on_a_key_says_what_it_counts(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, POLICY)
    result = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos(9, 4)))
    assert result == types.Hover(
        types.MarkupContent(types.MarkupKind.Markdown,
                            "**limits.memory**: the sum of the pods' memory limits\n\nin group team: 2Gi"),
        rng(9, 2, 15))


@pytest.mark.asyncio
async def test_definition_of_a_parent_is_its_declaration(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, POLICY)
    found = await client.text_document_definition_async(
        types.DefinitionParams(types.TextDocumentIdentifier(uri), pos(7, 15)))
    assert found == [types.Location(uri, rng(2, 6, 10))]


@pytest.mark.asyncio
async def test_completion_after_in_offers_the_groups(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, POLICY)
    text = POLICY + "\ngroup new in \n"
    await change(client, uri, 2, text)
    found = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(uri), pos(13, 13)))
    assert isinstance(found, types.CompletionList)
    assert [(i.label, i.kind, i.detail) for i in found.items] == [
        ("root", types.CompletionItemKind.Module, "group"), ("team", types.CompletionItemKind.Module, "group")]


@pytest.mark.asyncio
async def test_formatting_is_fmt(client: LanguageClient, policy: Path) -> None:
    messy = 'import "quotalang:policies"\ngroup root {\nrequests.cpu 10\n    limits.memory     8Gi\n}\n'
    uri = await open_doc(client, policy, messy)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(uri), types.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edits == (types.TextEdit(rng(0, 0, 0, end_line=5),
                                    'import "quotalang:policies"\n\ngroup root {\n'
                                    "  requests.cpu   10\n  limits.memory  8Gi\n}\n"),)


@pytest.mark.asyncio
async def test_a_code_action_declares_the_key_a_child_lacks(client: LanguageClient, policy: Path) -> None:
    text = POLICY.replace("  limits.memory  2Gi\n", "")
    uri = await open_doc(client, policy, text)
    (lacks,) = [d for d in client.diagnostics[uri] if d.code == "E104"]
    assert lacks.range == rng(7, 6, 10)
    found = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), lacks.range, types.CodeActionContext(diagnostics=[lacks])))
    edit = types.TextEdit(rng(10, 0, 0), "  limits.memory 0\n")
    assert found == (types.CodeAction(title="declare limits.memory 0", kind=types.CodeActionKind.QuickFix,
                                      diagnostics=(lacks,), is_preferred=True,
                                      edit=types.WorkspaceEdit(changes={uri: (edit,)})),)


@pytest.mark.asyncio
async def test_rename_of_a_group_rewrites_every_in(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, POLICY)
    found = await client.text_document_rename_async(
        types.RenameParams(types.TextDocumentIdentifier(uri), pos(2, 8), "org"))
    assert found == types.WorkspaceEdit(changes={uri: (types.TextEdit(rng(2, 6, 10), "org"),
                                                       types.TextEdit(rng(7, 14, 18), "org"))})


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[QUOTALANG, "lsp"]))
async def usage_client(lsp_client: LanguageClient, tmp_path: Path) -> AsyncIterator[None]:
    (tmp_path / "usage.yaml").write_text("root: {requests.cpu: 5, limits.memory: 1Gi}\n")
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), initialization_options={"usage": str(tmp_path / "usage.yaml")}))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio
async def test_hover_with_a_usage_snapshot_adds_used_and_free(usage_client: LanguageClient, policy: Path) -> None:
    client = usage_client
    uri = await open_doc(client, policy, POLICY)
    result = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos(2, 7)))
    assert result is not None and isinstance(result.contents, types.MarkupContent)
    # root: cpu 10 hard, 4 carved, 5 used -> 1 free; memory 8Gi, 2Gi carved, 1Gi used -> 5Gi free.
    assert result.contents.value.endswith(
        "| key | hard | carved | own room | used | free |\n|---|---|---|---|---|---|\n"
        "| `requests.cpu` | 10 | 4 | 6 | 5 | 1 |\n"
        "| `limits.memory` | 8Gi | 2Gi | 6Gi | 1Gi | 5Gi |")


@pytest.mark.asyncio
async def test_hostile_text_gets_diagnostics_and_empty_answers(client: LanguageClient, policy: Path) -> None:
    uri = await open_doc(client, policy, "\x00group {{{ in in \"\n" * 3)
    (error,) = client.diagnostics[uri]
    assert error.code in {"E001", "E002", "E003"} and error.source == "quotalang"
    hovered = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), pos(0, 3)))
    assert hovered is None
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(uri), types.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edits is None or list(edits) == []
    # The server is still there, and answers for the fixed text.
    assert await change(client, uri, 2, POLICY) == ()
