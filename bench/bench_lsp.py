"""`quotalang lsp` latency over stdio, as an editor sees it.

Run: `python bench/bench_lsp.py [--hovers 200] [--changes 10] [--groups 1000]`.

1. Hover on the example organisation (examples/policies) after the document
   is open: the time from sending `textDocument/hover` on a group name to its
   answer, p50 / p99 / max over `--hovers` requests (goal < 50 ms).
2. Diagnostics for a `--groups` policy (bench_server.generate_policy) after
   a change: from sending `didChange` (a child over-allocated, then fixed) to
   the `publishDiagnostics` for it, over `--changes` changes (goal < 1 s);
   every change is a new text (as typing makes), so the edited file is parsed
   anew and only the unchanged imports come from the server's parse memo.

The client is pygls's own, talking to `quotalang lsp` as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import generate_policy

ROOT = Path(__file__).resolve().parents[1]
QUOTALANG = str(Path(sys.executable).parent / "quotalang")


def figures(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms (n={len(ordered)})")


async def launch() -> tuple[LanguageClient, asyncio.Queue[types.PublishDiagnosticsParams]]:
    client = LanguageClient("bench", "1")
    published: asyncio.Queue[types.PublishDiagnosticsParams] = asyncio.Queue()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        published.put_nowait(params)

    await client.start_io(QUOTALANG, "lsp")
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    return client, published


async def until(published: asyncio.Queue[types.PublishDiagnosticsParams], uri: str) -> types.PublishDiagnosticsParams:
    while True:
        params = await published.get()
        if params.uri == uri:
            return params


async def open_doc(client: LanguageClient, published: asyncio.Queue[types.PublishDiagnosticsParams],
                   path: Path) -> str:
    uri = path.resolve().as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri, "quota", 1, path.read_text())))
    await until(published, uri)
    return uri


async def hover_latency(count: int) -> list[float]:
    client, published = await launch()
    path = ROOT / "examples" / "policies" / "ai-platform.quota"
    uri = await open_doc(client, published, path)
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines) if text.startswith("group "))
    times = []
    for _ in range(count):
        start = time.perf_counter()
        answer = await client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(line, 7)))
        times.append(time.perf_counter() - start)
        assert answer is not None
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


async def change_latency(groups: int, count: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        generate_policy(Path(folder), groups)
        path = Path(folder) / "org.quota"
        text = path.read_text()
        client, published = await launch()
        uri = await open_doc(client, published, path)
        header = "group team-0-0 in platform-0 {\n"
        line = text.split(header, 1)[1].splitlines()[0]  # its first limit
        times = []
        for version in range(2, count + 2):
            # Every other change over-allocates team-0-0's parent (its first limit ×1000), the next fixes it.
            changed = text.replace(header + line, header + line + "000", 1) if version % 2 else text
            changed += f"# change {version}\n"  # a text never seen before, as typing makes: parsed anew
            start = time.perf_counter()
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=version, uri=uri),
                [types.TextDocumentContentChangeWholeDocument(changed)]))
            params = await until(published, uri)
            times.append(time.perf_counter() - start)
            over = [d for d in params.diagnostics if d.code == "E105"]
            assert bool(over) == bool(version % 2), params.diagnostics[:1]
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hovers", type=int, default=200)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--groups", type=int, default=1000)
    args = parser.parse_args()
    print(f"hover on a group of examples/policies: {figures(asyncio.run(hover_latency(args.hovers)))}")
    print(f"diagnostics after a change, {args.groups} groups: "
          f"{figures(asyncio.run(change_latency(args.groups, args.changes)))}")


if __name__ == "__main__":
    main()
