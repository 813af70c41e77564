"""The official SARIF 2.1.0 JSON schema, from the npm package that ships it.

No PyPI or Debian package ships the schema file; Microsoft's
`@microsoft/jest-sarif` (the SARIF SDK's matchers, MIT) holds the final
2.1.0-rtm.5 schema as `lib/schemas/sarif-2.1.0-rtm.5.json`. It is fetched
once with npm's own client (`npm pack`, which checks the registry's
integrity hash) into the project's cache folder and read from there; nothing
of it is kept in the repository. `QUOTALANG_SARIF_SCHEMA` names a copy instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

PACKAGE = "@microsoft/jest-sarif@1.0.0-beta.0"
MEMBER = "package/lib/schemas/sarif-2.1.0-rtm.5.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "quotalang" / "sarif"


def schema() -> dict[str, Any]:
    """The schema as a dict; raises RuntimeError (the test fails, never skips) when it cannot be had."""
    given = os.environ.get("QUOTALANG_SARIF_SCHEMA")
    path = Path(given) if given else CACHE / "sarif-2.1.0-rtm.5.json"
    if not path.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"the SARIF schema needs npm (apt-get install npm) to fetch {PACKAGE}")
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "pack", PACKAGE, "--pack-destination", str(CACHE), "--json"],
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"npm pack {PACKAGE} failed: {done.stderr.strip()[-500:]}")
        tarball = CACHE / json.loads(done.stdout)[0]["filename"]
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                raise RuntimeError(f"{tarball} holds no {MEMBER}")
            path.write_bytes(member.read())
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
