"""The request deadline: how long the apiserver waits for an answer, and how much of it a decision may use.

The apiserver tells a webhook how long it will wait (`POST /validate?timeout=10s`,
the webhook's `timeoutSeconds`). A store that retries compare-and-swap
conflicts must stop before that, or its answer arrives after the apiserver has
already applied its failure policy. The server turns the timeout into a
deadline (`budget`), and the engine puts it in the request's `Ask`.
"""

from __future__ import annotations

import re

DEFAULT_TIMEOUT = 10.0  # the apiserver's default webhook timeout (admissionregistration v1)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_timeout(text: str | None) -> float | None:
    """A Go duration as the apiserver writes it (`10s`, `1m30s`, `500ms`); None if absent or unreadable."""
    if not text:
        return None
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and total > 0 else None


def budget(timeout: float) -> float:
    """How much of the apiserver's timeout a decision may use: the rest carries the answer back."""
    return max(timeout - 0.5, timeout * 0.5)


__all__ = ["DEFAULT_TIMEOUT", "budget", "parse_timeout"]
