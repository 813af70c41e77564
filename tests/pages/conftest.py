"""Fixtures for the browser suite: a real `quotalang serve` process and Debian's chromium.

The server is `quotalang serve --insecure-http` on 127.0.0.1 with the example
organisation (examples/policies, run from the repository root so that the
proposed diffs name `examples/policies/...`), and some admitted workloads:
examples/workloads/tfjob.yaml relabelled to alice (9 A100s of her 16) and the
example Deployment. bob is left empty so that what-if shows the documented
denial of tfjob-too-big.yaml (`used 0 of 16`).

Playwright launches the `chromium` on PATH (scripts/provision-browser.sh
installs it), never a browser of its own. Without it the suite is skipped,
unless `QUOTALANG_E2E_REQUIRED=1` (as `.ci/run` sets), which makes it fail.

Screenshots go to `$QUOTALANG_ARTIFACTS/pages` (default build/test-artifacts/pages).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import orjson
import pytest
import yaml

from tests.server.webhook_helpers import response_of, review

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REQUIRED = os.environ.get("QUOTALANG_E2E_REQUIRED") == "1"
ARTIFACTS = Path(os.environ.get("QUOTALANG_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "pages"


def workload(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((EXAMPLES / "workloads" / name).read_text())
    return obj


def relabelled(obj: dict[str, Any], group: str, name: str) -> dict[str, Any]:
    """A copy of `obj` charged to `group` under another name."""
    out = copy.deepcopy(obj)
    out["metadata"]["labels"]["biz.group.resource.quota"] = group
    out["metadata"]["name"] = name
    return out


def _missing(what: str) -> NoReturn:
    message = f"{what} (scripts/provision-browser.sh installs Debian's chromium; pip install -e '.[test]')"
    if REQUIRED:
        pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Served:
    base: str  # the API port (pages, /api, /metrics): 127.0.0.1, no token, with no cluster
    log: Path
    admission: str  # the admission port: /validate, /readyz

    def client(self, *, admission: bool = False) -> httpx.Client:
        return httpx.Client(base_url=self.admission if admission else self.base, timeout=10)

    def admit(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Send `obj` through /validate as the apiserver would; the answer's `response`."""
        with self.client(admission=True) as client:
            answer = client.post("/validate", content=orjson.dumps(review(obj)),
                                 headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        return response_of(answer.json())

    def api(self, path: str) -> Any:
        with self.client() as client:
            answer = client.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()


@contextlib.contextmanager
def serve(folder: Path, policy: str | Path) -> Iterator[Served]:
    """`quotalang serve --insecure-http` of `policy` (a directory, relative to the repository root or absolute)
    on free loopback ports, ready (`/readyz`) when entered, stopped on exit."""
    port, api_port = _free_port(), _free_port()
    log = folder / "server.log"
    command = [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(policy),
               "--host", "127.0.0.1", "--port", str(port), "--api-port", str(api_port), "--insecure-http"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "XDG_STATE_HOME": str(folder / "state")})
    server = Served(f"http://127.0.0.1:{api_port}", log, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"quotalang serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                with server.client(admission=True) as client:
                    if client.get("/readyz").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"quotalang serve did not become ready:\n{log.read_text()}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("pages-serve"), "examples/policies") as server:
        assert server.admit(relabelled(workload("tfjob.yaml"), "alice", "bert-alice"))["allowed"]
        assert server.admit(workload("deployment.yaml"))["allowed"]
        yield server


# Package scope, not session: Playwright's sync API keeps an event loop running in the
# main thread while it is open, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        _missing("no chromium on PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    with sync_playwright() as playwright:
        # Debian's chromium, never a downloaded one; --no-sandbox because CI runs as root.
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def open_page(browser: Browser, base: str) -> Iterator[Page]:
    """A page on `base` that fails the test if it logs a script error or fails to load an asset or its JSON."""
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors, and any failed load of an asset or of the JSON the pages poll. (A form
    # answered 400 is the page working as meant: the tests check those statuses themselves.)
    opened.on("console", lambda msg: errors.append(msg.text)
              if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    opened.on("response", lambda r: errors.append(f"{r.status} {r.url}")
              if r.status >= 400 and r.request.resource_type != "document" else None)
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    with open_page(browser, served.base) as opened:
        yield opened


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save a PNG of the page as a test artifact; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
