"""The policy directory as ConfigMap data: its `*.quota` files, flat, and nothing from outside it.

The shipped kind library (`quotalang:policies`) is in the image. A policy that
imports a file from outside its directory cannot be put in one ConfigMap: an error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from quotalang import loader
from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.errors import InputError

CONFIGMAP_LIMIT = 1024 * 1024  # the apiserver refuses larger ConfigMaps



def policy_files(paths: Sequence[str]) -> tuple[CompiledPolicy, dict[str, str]]:
    """Compile the policy and collect its files for a flat ConfigMap (file name → text)."""
    sources = loader.load(list(paths))
    policy = compile_sources(sources)
    library = os.path.abspath(loader.library_dir())
    own: dict[str, str] = {}  # abspath -> flat key
    for root in paths:
        path = Path(root)
        found = sorted(p for p in path.iterdir() if p.suffix == ".quota") if path.is_dir() else [path]
        for file in found:
            if file.name in own.values():
                raise InputError(f"two policy files are named {file.name}: a ConfigMap holds one flat folder")
            own[os.path.abspath(file)] = file.name
    files: dict[str, str] = {}
    for name, text in sources.texts.items():
        absolute = os.path.abspath(name)
        if absolute.startswith(library + os.sep):
            continue  # the shipped kind rules: part of the image
        if absolute not in own:
            raise InputError(
                f"the policy imports {name}, which is outside the policy directory; "
                "move it into the directory so the ConfigMap can hold it"
            )
        files[own[absolute]] = text
    size = sum(len(k) + len(v.encode()) for k, v in files.items())
    if size > CONFIGMAP_LIMIT:
        raise InputError(f"the policy files hold {size} bytes, over a ConfigMap's limit of {CONFIGMAP_LIMIT}")
    return policy, dict(sorted(files.items()))

