"""The wheel `pip install .` builds: one import root, and the pages' templates and static files inside it.

setuptools warns that a data folder not listed as a package will stop being
shipped; the pages would then fail at their first request on an installed
quotalang while every test from a checkout passed. Built the way a user's
pip builds it (an isolated build with the pinned setuptools).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                    ".hypothesis", ".benchmarks")


def test_the_wheel_holds_one_import_root_and_the_pages_files(tmp_path: Path) -> None:
    source = tmp_path / "source"  # pip builds in the tree: a copy keeps build/ and egg-info out of the checkout
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    output = built.stdout + built.stderr
    assert "installing to build" in output or "creating build" in output  # -v shows the backend's own output
    assert "is absent from the `packages` configuration" not in output
    (wheel,) = tmp_path.glob("quotalang-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("quotalang/server/templates/base.html", "quotalang/server/templates/group.html",
                    "quotalang/server/static/pages.css", "quotalang/server/static/pages.js",
                    "quotalang/grammar.lark", "quotalang/controller/ledger/kubernetes/ledger.py"):
        assert shipped in names, shipped
    tops = {name.split("/")[0] for name in names if not name.startswith("quotalang-")}
    assert tops == {"quotalang"}, tops
