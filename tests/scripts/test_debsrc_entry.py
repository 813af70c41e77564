"""scripts/debsrc_entry.py: the deb-src entry copies the machine's own deb entry (any mirror, its keyring)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "debsrc_entry.py"


def run(etc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--etc", str(etc), *args],
                          capture_output=True, text=True, timeout=30)


def make_etc(tmp_path: Path, files: dict[str, str]) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    return etc


def test_deb822_mirror_and_keyring_are_copied(tmp_path: Path) -> None:
    etc = make_etc(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\n"
        "# http://snapshot.example/archive\n"
        "URIs: http://mirror.example.org/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main contrib\n"
        "Signed-By: /usr/share/keyrings/custom.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example.org/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n")})
    done = run(etc)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("Types: deb-src\nURIs: http://mirror.example.org/debian\nSuites: bookworm\n"
                           "Components: main\nSigned-By: /usr/share/keyrings/custom.gpg\n")


def test_one_line_format_with_options(tmp_path: Path) -> None:
    etc = make_etc(tmp_path, {"sources.list": (
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/m.gpg] https://m.example/debian bookworm main\n")})
    done = run(etc)
    assert done.returncode == 0, done.stderr
    assert "URIs: https://m.example/debian\n" in done.stdout
    assert "Signed-By: /etc/apt/keyrings/m.gpg\n" in done.stdout


def test_only_an_exact_enabled_suite_and_component_count(tmp_path: Path) -> None:
    etc = make_etc(tmp_path, {
        "sources.list.d/a.sources": ("Types: deb\nURIs: http://updates.example/\nSuites: bookworm-updates\n"
                                     "Components: main\n\n"
                                     "Types: deb\nURIs: http://disabled.example/\nSuites: bookworm\n"
                                     "Components: main\nEnabled: no\n\n"
                                     "Types: deb\nURIs: http://contrib.example/\nSuites: bookworm\n"
                                     "Components: contrib\n"),
        "sources.list.d/b.list": "deb http://right.example/debian bookworm main\n"})
    done = run(etc)
    assert done.returncode == 0, done.stderr
    assert "URIs: http://right.example/debian\n" in done.stdout
    assert "Signed-By" not in done.stdout


def test_no_entry_is_an_error_naming_what_was_read(tmp_path: Path) -> None:
    etc = make_etc(tmp_path, {"sources.list": "deb http://x.example/debian trixie main\n"})
    done = run(etc)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no enabled deb entry serves bookworm main" in done.stderr
    assert str(etc / "sources.list") in done.stderr
