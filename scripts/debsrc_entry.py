#!/usr/bin/env python3
"""Print a deb-src entry for one suite and component, copied from the machine's own deb entry.

    scripts/debsrc_entry.py [--etc /etc/apt] [--suite bookworm] [--component main]

`apt-get source` needs a deb-src line, and writing an archive address into the
provisioning script breaks behind any mirror (and apt refuses two Signed-By
values for one source). So the address and keyring are taken from the enabled
`deb` entry that already serves the suite, in either format apt reads:
deb822 `*.sources` files and one-line `sources.list` / `*.list` files.

Exit 0 with a deb822 paragraph on stdout; exit 1 with a message naming the
files read when no deb entry serves the suite and component.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None
    enabled: bool = True


def deb822_entries(text: str) -> Iterator[Entry]:
    """Paragraphs of a `.sources` file; continuation lines (a leading space) keep inline keys whole."""
    for paragraph in _paragraphs(text):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph:
            if line[:1] in (" ", "\t") and key is not None:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "types" not in fields or "uris" not in fields:
            continue
        yield Entry(
            types=tuple(fields["types"].split()),
            uris=tuple(fields["uris"].split()),
            suites=tuple(fields.get("suites", "").split()),
            components=tuple(fields.get("components", "").split()),
            signed_by=fields.get("signed-by"),
            enabled=fields.get("enabled", "yes").lower() != "no",
        )


def _paragraphs(text: str) -> Iterator[list[str]]:
    paragraph: list[str] = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            if paragraph:
                yield paragraph
            paragraph = []
            continue
        paragraph.append(raw.rstrip())
    if paragraph:
        yield paragraph


def one_line_entries(text: str) -> Iterator[Entry]:
    """`deb [signed-by=… arch=…] URI suite component…` lines."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        options: dict[str, str] = {}
        rest = rest.strip()
        if rest.startswith("["):
            inside, _, rest = rest[1:].partition("]")
            for option in inside.split():
                name, _, value = option.partition("=")
                options[name.lower()] = value
        words = rest.split()
        if len(words) < 2:
            continue
        yield Entry(types=(kind,), uris=(words[0],), suites=(words[1],), components=tuple(words[2:]),
                    signed_by=options.get("signed-by"))


def entries(etc: Path) -> tuple[list[Entry], list[Path]]:
    read: list[Path] = []
    found: list[Entry] = []
    one_line = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            read.append(path)
            found.extend(one_line_entries(path.read_text(errors="replace")))
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        read.append(path)
        found.extend(deb822_entries(path.read_text(errors="replace")))
    return found, read


def debsrc_paragraph(entry: Entry, suite: str, component: str) -> str:
    lines = ["Types: deb-src", f"URIs: {entry.uris[0]}", f"Suites: {suite}", f"Components: {component}"]
    if entry.signed_by:
        lines.append(f"Signed-By: {entry.signed_by}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etc", type=Path, default=Path("/etc/apt"))
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--component", default="main")
    args = parser.parse_args(argv)
    found, read = entries(args.etc)
    for entry in found:
        if entry.enabled and "deb" in entry.types and args.suite in entry.suites \
                and args.component in entry.components:
            sys.stdout.write(debsrc_paragraph(entry, args.suite, args.component))
            return 0
    names = ", ".join(str(p) for p in read) or f"nothing under {args.etc}"
    print(f"debsrc_entry: no enabled deb entry serves {args.suite} {args.component} (read: {names}); "
          f"add one, or a deb-src entry for it, to the apt sources", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
