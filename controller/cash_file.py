"""Cash state on disk, for a controller with no ledger store that survives a restart.

The file is JSON:

    {"version": 1,
     "groups": {"alice": {"cash": {"requests.nvidia.com/gpu": 3600000000000},
                          "periodStart": 1795392000.0,
                          "lastAccrual": 1795424400.0}}}

`save` writes it atomically (a temporary file in the same directory, fsync,
`os.replace`), so a crash leaves either the old file or the new one. `load`
checks the whole file before restoring anything; a file that cannot be read
or is not this format raises `CashFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from quotalang.controller.ledger.base import CashState, CashStore
from quotalang.errors import InternalError

VERSION = 1


class CashFileError(InternalError):
    """A cash state file that cannot be read, parsed or written."""


def _encode(state: CashState) -> dict[str, Any]:
    return {
        "cash": {key: int(value) for key, value in sorted(state.used.items())},
        "periodStart": state.period_start,
        "lastAccrual": state.last_accrual,
    }


def save(path: str | os.PathLike[str], ledger: CashStore, groups: Iterable[str]) -> None:
    """Write the cash state of `groups` to `path`, atomically. Raises `CashFileError` when it cannot."""
    target = Path(path)
    body = {
        "version": VERSION,
        "groups": {group: _encode(ledger.cash_state(group)) for group in sorted(set(groups))},
    }
    data = json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"
    directory = target.parent
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_dir(directory)
    except OSError as exc:
        raise CashFileError(f"cannot write cash state file {target}: {exc.strerror or exc}") from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not every platform lets a directory be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} must be a number of seconds or null, not {value!r}")
    return float(value)


def _decode(group: Any, raw: Any) -> CashState:
    if not isinstance(raw, Mapping):
        raise ValueError(f"group {group!r} must be an object")
    cash = raw.get("cash", {})
    if not isinstance(cash, Mapping):
        raise ValueError(f"group {group!r}: cash must be an object of key -> integer")
    used: dict[str, int] = {}
    for key, value in cash.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"group {group!r}: cash {key} must be a non-negative integer, not {value!r}")
        used[key] = value
    return CashState(
        used,
        _time(raw.get("periodStart"), f"group {group!r}: periodStart"),
        _time(raw.get("lastAccrual"), f"group {group!r}: lastAccrual"),
    )


def _parse(target: Path, text: str) -> dict[str, CashState]:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CashFileError(f"cash state file {target} is not valid JSON: {exc}") from exc
    if not isinstance(body, Mapping):
        raise CashFileError(f"cash state file {target}: expected a JSON object at the top")
    version = body.get("version")
    if version != VERSION or isinstance(version, bool):
        raise CashFileError(f"cash state file {target}: unsupported version {version!r} (expected {VERSION})")
    groups = body.get("groups")
    if not isinstance(groups, Mapping):
        raise CashFileError(f"cash state file {target}: groups must be an object")
    try:
        return {str(group): _decode(group, raw) for group, raw in groups.items()}
    except ValueError as exc:
        raise CashFileError(f"cash state file {target}: {exc}") from exc


def load(path: str | os.PathLike[str], ledger: CashStore) -> int:
    """Restore cash from `path` into `ledger`; return how many groups were restored.

    A missing file restores nothing (0). The whole file is checked before any
    group is touched; a group the ledger already holds a later accrual for
    keeps the ledger's numbers. Raises `CashFileError` for an unreadable file.
    """
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    except UnicodeDecodeError as exc:
        raise CashFileError(f"cash state file {target} is not UTF-8 text: {exc.reason}") from exc
    except OSError as exc:
        raise CashFileError(f"cannot read cash state file {target}: {exc.strerror or exc}") from exc
    restored = 0
    for group, saved in _parse(target, text).items():
        applied = False

        def restore(current: CashState, saved: CashState = saved) -> CashState | None:
            nonlocal applied
            if current.last_accrual is not None and (
                saved.last_accrual is None or saved.last_accrual < current.last_accrual
            ):
                return None  # the ledger is ahead of the file
            applied = True
            return CashState(dict(saved.used), saved.period_start, saved.last_accrual)

        ledger.update_cash(group, restore)
        restored += applied
    return restored


__all__ = ["VERSION", "CashFileError", "load", "save"]
