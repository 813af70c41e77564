"""Reading fields of Kubernetes objects that may be absent or of the wrong type.

Admission hands us whatever a client sent; these readers never raise on a
missing or malformed field, they return an empty value instead (the kind
rules and the pod usage code report what they cannot read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_EMPTY: Mapping[str, Any] = {}


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`metadata.labels`, or an empty mapping. `type(...) is dict` first: the hot path sees plain dicts."""
    meta = obj.get("metadata") if type(obj) is dict or isinstance(obj, Mapping) else None
    labels = meta.get("labels") if type(meta) is dict or isinstance(meta, Mapping) else None
    return labels if type(labels) is dict or isinstance(labels, Mapping) else _EMPTY


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`metadata.annotations`, or an empty mapping."""
    meta = obj.get("metadata") if type(obj) is dict or isinstance(obj, Mapping) else None
    found = meta.get("annotations") if type(meta) is dict or isinstance(meta, Mapping) else None
    return found if type(found) is dict or isinstance(found, Mapping) else _EMPTY


def metadata_of(obj: Mapping[str, Any] | None, source: str) -> Mapping[str, Any]:
    """`metadata.labels` or `metadata.annotations`, as `source` (a setting's `label` / `annotation`) says."""
    return annotations_of(obj) if source == "annotation" else labels_of(obj)


def name_of(obj: Mapping[str, Any]) -> str:
    """`namespace/name` (or `name`) for messages; `<unnamed>` without metadata."""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
    return "<unnamed>"
