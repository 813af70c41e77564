"""The language server's answers computed in process (analysis → hover, navigation, completion, actions).

Same checker, same spans as over stdio (tests/lsp/test_server.py); here each
feature's other cases, on hand-written policies with hand-placed positions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from quotalang.evaluator import Snapshot
from quotalang.lsp import actions, completion, convert, hover, navigation
from quotalang.lsp.analysis import Analysis, analyse, compiled

ROOT_FILE = """\
import "quotalang:policies"

settings {
  group label  "quota.group"
  model label  gpu "quota.group/gpu-type"
  model gpu A100
}

group root {
  requests.nvidia.com/gpu       8
  requests.nvidia.com/gpu.A100  4
}
"""
TEAMS_FILE = """\
group team in root {
  requests.nvidia.com/gpu       6
  requests.nvidia.com/gpu.A100  2
  namespaces "team", "team-*"
}

group lab in root {
  requests.nvidia.com/gpu       3
  requests.nvidia.com/gpu.A100  1
  namespaces "lab"
}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root.quota").write_text(ROOT_FILE)
    (tmp_path / "teams.quota").write_text(TEAMS_FILE)
    return tmp_path


def md(result: types.Hover | None) -> str:
    assert result is not None and isinstance(result.contents, types.MarkupContent)
    return result.contents.value


def test_over_allocation_in_one_file_points_at_the_children_in_another(folder: Path) -> None:
    analysis = analyse(folder, {})
    found = convert.by_file(analysis, folder / "root.quota")
    teams = (folder / "teams.quota").as_uri()
    (over,) = [d for d in found[(folder / "root.quota").as_uri()] if d.code == "E105"]
    assert over.range == types.Range(types.Position(9, 2), types.Position(9, 25))
    assert over.message.startswith("children of root over-allocate requests.nvidia.com/gpu: 9 > 8 (team 6, lab 3)")
    assert over.related_information == [
        types.DiagnosticRelatedInformation(
            types.Location(teams, types.Range(types.Position(1, 2), types.Position(1, 33))), "team's share: 6"),
        types.DiagnosticRelatedInformation(
            types.Location(teams, types.Range(types.Position(7, 2), types.Position(7, 33))), "lab's share: 3")]
    assert [d.code for d in found[teams] if d.severity == types.DiagnosticSeverity.Error] == []


def test_unsaved_text_wins_over_the_disk(folder: Path) -> None:
    fixed = TEAMS_FILE.replace("requests.nvidia.com/gpu       3", "requests.nvidia.com/gpu       2")
    analysis = analyse(folder, {(folder / "teams.quota").resolve(): fixed})
    assert [d.code for d in analysis.findings if d.severity == "error"] == []
    assert compiled(analysis).compiled is not None


def test_a_syntax_error_is_a_diagnostic_and_navigation_has_no_index(folder: Path) -> None:
    analysis = analyse(folder, {(folder / "teams.quota").resolve(): "group team in root {\n  ???\n}\n"})
    assert analysis.index is None
    (error,) = analysis.findings
    assert error.code == "E002" and error.span is not None and (error.span.file, error.span.line) == ("teams.quota", 2)
    assert hover.hover(analysis, "teams.quota", 1, 8) is None


def clean(folder: Path, usage: Snapshot | None = None) -> Analysis:
    fixed = TEAMS_FILE.replace("requests.nvidia.com/gpu       3", "requests.nvidia.com/gpu       2")
    return compiled(analyse(folder, {(folder / "teams.quota").resolve(): fixed}, usage))


def test_hover_on_a_group_with_a_usage_snapshot_shows_used_and_free(folder: Path) -> None:
    # team: hard 6 / 2, nothing carved; used 5 / 2 -> free 1 / 0.
    usage = Snapshot.parse({"team": {"requests.nvidia.com/gpu": "5", "requests.nvidia.com/gpu.A100": "2"}})
    text = md(hover.hover(clean(folder, usage), "teams.quota", 1, 8))
    assert text == (
        "**group team** · `root/team` · mode enforce\n\nchildren: none\n\n"
        'namespaces: "team", "team-*"\n\n'
        "| key | hard | carved | own room | used | free |\n|---|---|---|---|---|---|\n"
        "| `requests.nvidia.com/gpu` | 6 | 0 | 6 | 5 | 1 |\n"
        "| `requests.nvidia.com/gpu.A100` | 2 | 0 | 2 | 2 | 0 |")


def test_hover_on_a_model_key_names_its_generic_key(folder: Path) -> None:
    text = md(hover.hover(clean(folder), "root.quota", 11, 5))
    assert text == ("**requests.nvidia.com/gpu.A100**: the sum of the pods' nvidia.com/gpu requests "
                    "(an extended resource: requests only)\n\n"
                    "A model key: usage of model A100 counts toward `requests.nvidia.com/gpu` too "
                    "(the prefix rule), so both limits hold at once\n\nin group root: 4")


def test_hover_on_a_kind_rule_path_says_what_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.quota").write_text(
        "kind example.com/v1 Job {\n  pods each spec.sets.* {\n    replicas .count default 1\n"
        "    template .template\n  }\n}\n")
    analysis = analyse(tmp_path, {})
    assert md(hover.hover(analysis, "k.quota", 3, 15)) == "**.count**: reads `count` of each item of `spec.sets.*`"
    each = md(hover.hover(analysis, "k.quota", 2, 15))
    assert each == "**spec.sets.***: reads `spec` → `sets` → each item of the object"


def test_references_and_definitions(folder: Path) -> None:
    index = clean(folder).index
    assert index is not None
    root, teams = (folder / "root.quota").as_uri(), (folder / "teams.quota").as_uri()

    def loc(uri: str, line: int, start: int, end: int) -> types.Location:
        return types.Location(uri, types.Range(types.Position(line, start), types.Position(line, end)))

    assert navigation.references(index, "root.quota", 9, 8, True) == [
        loc(root, 8, 6, 10), loc(teams, 0, 14, 18), loc(teams, 6, 13, 17)]
    assert navigation.references(index, "root.quota", 9, 8, False) == [loc(teams, 0, 14, 18), loc(teams, 6, 13, 17)]
    # A child's key: the parent's line for it.
    assert navigation.definition(index, "teams.quota", 2, 5) == [loc(root, 9, 2, 33)]
    library = navigation.definition(index, "root.quota", 1, 10)
    assert library and all(found.uri.endswith(".quota") for found in library)


def test_rename_refuses_a_taken_or_malformed_name(folder: Path) -> None:
    index = clean(folder).index
    assert index is not None
    for bad in ("team", "Not-A-Name", "a b"):
        with pytest.raises(ValueError, match="is not a free group name"):
            navigation.rename(index, "root.quota", 9, 8, bad)


def test_completion_of_keys_offers_the_declared_models(folder: Path) -> None:
    analysis = clean(folder)
    text = TEAMS_FILE.replace('  namespaces "lab"\n', '  namespaces "lab"\n  req\n')
    labels = [i.label for i in completion.complete(text, 10, 5, analysis.index, "lab")]
    assert "requests.nvidia.com/gpu.A100" in labels and "requests.cpu" in labels and "mode" in labels
    assert "requests.cpu.A100" not in labels  # a gpu model is no cpu model
    settings = [i.label for i in completion.complete(ROOT_FILE, 5, 2, analysis.index, None)]
    assert settings[:2] == ['group label "', 'model label cpu "']
    top = [i.label for i in completion.complete(ROOT_FILE + "\n\n", 13, 0, analysis.index, None)]
    assert top == ["import", "settings", "group", "kind"]


def test_a_did_you_mean_becomes_a_replacement(folder: Path) -> None:
    analysis = analyse(folder, {(folder / "teams.quota").resolve(): TEAMS_FILE.replace(
        '  namespaces "lab"\n', '  namespaces "lab"\n  requests.cpo 1\n')})
    found = convert.by_file(analysis, folder / "teams.quota")
    uri = (folder / "teams.quota").as_uri()
    (typo,) = [d for d in found[uri] if d.message.startswith("unknown resource name requests.cpo")]
    text = analysis.texts["teams.quota"]
    fixes = actions.actions(uri, "teams.quota", text, [typo], analysis.index)
    edit = types.TextEdit(types.Range(types.Position(10, 2), types.Position(10, 14)), "requests.cpu")
    assert fixes == [types.CodeAction(title="replace with requests.cpu", kind=types.CodeActionKind.QuickFix,
                                      diagnostics=[typo], is_preferred=True,
                                      edit=types.WorkspaceEdit(changes={uri: [edit]}))]


def test_a_created_kind_leads_to_its_rule_and_the_rule_to_its_creators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.quota").write_text(
        "kind example.com/v1 Trainer {\n  creates apps/v1 Thing\n  pods {\n    template spec.template\n  }\n}\n\n"
        "kind apps/v1 Thing {\n  pods {\n    template spec.template\n  }\n}\n")
    analysis = analyse(tmp_path, {})
    assert analysis.index is not None
    uri = (tmp_path / "k.quota").as_uri()

    def loc(line: int, start: int, end: int) -> types.Location:
        return types.Location(uri, types.Range(types.Position(line, start), types.Position(line, end)))

    assert navigation.definition(analysis.index, "k.quota", 2, 14) == [loc(7, 0, 18)]
    assert navigation.references(analysis.index, "k.quota", 8, 3, True) == [loc(7, 0, 18), loc(1, 10, 23)]
    assert md(hover.hover(analysis, "k.quota", 2, 14)) == (
        "**creates apps/v1 Thing**: charged through its owner, this kind; its kind rule is at k.quota:8:1")


def test_lsp_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import sys

    from quotalang.cli import main

    monkeypatch.delitem(sys.modules, "quotalang.lsp.service", raising=False)
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)  # what an install without pygls looks like
    assert main(["lsp"], out=io.StringIO()) == 2
    assert "quotalang lsp needs the lsp extra: pip install 'quotalang[lsp]'" in capsys.readouterr().err


@pytest.mark.parametrize(("line", "start", "end", "fix", "expected"), [
    ("  unlabelled group teem", 2, 23, "team", (19, 23)),  # E202's range is the whole setting
    ("  mode warning", 7, 14, "mode warn", (2, 14)),  # a keyword's did-you-mean names the statement
    ("  requests.cpo 1  # typo", 2, 14, "requests.cpu", (2, 14)),
    ("group a in rot {", 11, 14, "root", (11, 14)),
])
def test_a_fix_replaces_the_words_most_like_it(line: str, start: int, end: int, fix: str,
                                               expected: tuple[int, int]) -> None:
    found = actions.replacement(line, start, end, fix)
    assert found is not None and (found.start.character, found.end.character) == expected


def test_a_change_reparses_only_the_changed_file(folder: Path) -> None:
    memo: dict[tuple[str, str], object] = {}
    first = analyse(folder, {}, None, memo)  # type: ignore[arg-type]
    edited = TEAMS_FILE.replace("gpu       3", "gpu       2")
    second = analyse(folder, {(folder / "teams.quota").resolve(): edited}, None, memo)  # type: ignore[arg-type]
    assert first.index is not None and second.index is not None
    assert second.index.files["root.quota"] is first.index.files["root.quota"]
    assert second.index.files["teams.quota"] is not first.index.files["teams.quota"]
    assert [d.code for d in second.findings if d.severity == "error"] == []


def test_hover_on_a_group_lists_the_bindings_it_inherits(folder: Path) -> None:
    bound = ROOT_FILE.replace("  requests.nvidia.com/gpu.A100  4\n", "  requests.nvidia.com/gpu.A100  4\n"
                              '  default namespaces "shared"\n')
    fixed = TEAMS_FILE.replace("requests.nvidia.com/gpu       3", "requests.nvidia.com/gpu       2")
    analysis = compiled(analyse(folder, {(folder / "root.quota").resolve(): bound,
                                         (folder / "teams.quota").resolve(): fixed}))
    text = md(hover.hover(analysis, "teams.quota", 7, 8))
    assert 'namespaces: "lab"\n\nnamespaces from root: "shared" (default)\n\n| key |' in text
