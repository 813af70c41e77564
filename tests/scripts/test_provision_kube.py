"""scripts/provision-kube.sh stops before the long build, naming the tool, when one is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "provision-kube.sh"


def path_without(tmp_path: Path, hidden: str) -> str:
    """A PATH holding links to every command on the current PATH except `hidden`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            link = bin_dir / name
            if name != hidden and not link.exists() and os.access(target, os.X_OK):
                link.symlink_to(target)
    return str(bin_dir)


@pytest.mark.parametrize("hidden", ["rsync", "etcd"])
def test_a_missing_tool_is_named_before_the_build(tmp_path: Path, hidden: str) -> None:
    if shutil.which("bash") is None:
        pytest.fail("bash is needed to run the provisioning script")
    assets = tmp_path / "assets"
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    env.update(PATH=path_without(tmp_path, hidden), QUOTALANG_KUBE_ASSETS=str(assets))
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert hidden in done.stderr, done.stderr
    assert "building kube-apiserver" not in done.stderr
    assert not (assets / "kube-apiserver").exists()
