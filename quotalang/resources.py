"""ResourceQuota resource names and the model suffix (`limits.cpu.A4`).

A key is a ResourceQuota name, optionally followed by `.<model>`. Splitting is
done once, at compile time; the evaluator only sees the split result.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from quotalang.nodes import ModelKind

ResourceClass = Literal["cpu", "memory", "ephemeral-storage", "hugepages", "extended", "count"]

DEFAULT_GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")

# Names ResourceQuota accepts that are not extended resources.
STANDARD_KEYS: frozenset[str] = frozenset(
    {
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "count/pods",
    }
)

_HUGEPAGES = re.compile(r"^(requests\.|limits\.)?hugepages-[0-9]+[A-Za-z]*$")
_EXTENDED = re.compile(r"^requests\.([a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LIMITS_EXTENDED = re.compile(r"^limits\.[a-z0-9.-]+/[A-Za-z0-9_.-]+$")
_COUNT = re.compile(r"^count/[a-z0-9.-]+$")
_MODEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Key:
    """A split key: `base` is the ResourceQuota name, `model` the suffix or None."""

    text: str
    base: str
    model: str | None
    known: bool

    @property
    def resource_class(self) -> ResourceClass:
        return resource_class(self.base)


def is_known(name: str) -> bool:
    """Whether ResourceQuota would recognise `name` (no model suffix)."""
    return bool(
        name in STANDARD_KEYS
        or _HUGEPAGES.match(name)
        or _EXTENDED.match(name)
        or _COUNT.match(name)
    )


def is_limits_extended(name: str) -> bool:
    """`limits.nvidia.com/gpu`: ResourceQuota has no such form."""
    return bool(_LIMITS_EXTENDED.match(name)) and not _HUGEPAGES.match(name)


def split_key(text: str, gpu_resources: frozenset[str] | tuple[str, ...] = DEFAULT_GPU_RESOURCES) -> Key:
    """Split `limits.cpu.A4` into (`limits.cpu`, `A4`); unknown names keep model None.

    Extended resource names may contain dots, so `requests.<domain>/<name>.<X>`
    is a model key only when `<domain>/<name>` is a gpu resource.
    """
    base, dot, model = text.rpartition(".")
    if dot and _MODEL.match(model):
        gpu = extended_name(base)
        if gpu is not None and gpu in gpu_resources:
            return Key(text, base, model, True)
    if is_known(text) or is_limits_extended(text):
        return Key(text, text, None, is_known(text))
    if dot and _MODEL.match(model) and (is_known(base) or is_limits_extended(base)):
        return Key(text, base, model, is_known(base))
    return Key(text, text, None, False)


def resource_class(base: str) -> ResourceClass:
    """Which kind of quantity a base key holds, for unit checks and model labels."""
    if base in ("pods", "count/pods") or base.startswith("count/"):
        return "count"
    bare = base.split(".", 1)[1] if base.startswith(("requests.", "limits.")) else base
    if bare == "cpu":
        return "cpu"
    if bare == "memory":
        return "memory"
    if bare == "ephemeral-storage":
        return "ephemeral-storage"
    if bare.startswith("hugepages-"):
        return "hugepages"
    return "extended"


def extended_name(base: str) -> str | None:
    """`requests.nvidia.com/gpu` → `nvidia.com/gpu`; None for other keys."""
    match = _EXTENDED.match(base)
    return match.group(1) if match else None


@lru_cache(maxsize=4096)
def model_kind(base: str, gpu_resources: frozenset[str]) -> ModelKind | None:
    """Which model label a base key reads: cpu, memory, gpu, or none at all.

    Cached: the evaluator asks it for every key of every new pod shape.
    """
    klass = resource_class(base)
    if klass == "cpu" or klass == "memory":
        return klass
    if klass == "extended" and extended_name(base) in gpu_resources:
        return "gpu"
    return None


def suggest(name: str) -> str | None:
    """The closest known name, for 'unknown resource' hints."""
    candidates = [
        *sorted(STANDARD_KEYS),
        "requests.nvidia.com/gpu",
        "requests.amd.com/gpu",
        "requests.hugepages-2Mi",
        "limits.hugepages-2Mi",
        "hugepages-1Gi",
    ]
    if name.startswith("limits.") and "/" in name:
        return "requests." + name[len("limits.") :]
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return found[0] if found else None
