"""quotalang: policy-as-code hierarchical quotas for Kubernetes.

The public facade: compile a policy directory once, evaluate many requests.
Names are imported lazily so that `import quotalang.quantity` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quotalang.compiler import compile_policy, compile_sources
    from quotalang.decision import Decision, UsageSource, Violation
    from quotalang.errors import (
        Diagnostic,
        InputError,
        InternalError,
        PolicyError,
        QuantityError,
        QuotalangError,
        UserInputError,
    )
    from quotalang.evaluator import Snapshot, evaluate
    from quotalang.policy import CompiledPolicy

_EXPORTS = {
    "CompiledPolicy": "policy",
    "compile_policy": "compiler",
    "compile_sources": "compiler",
    "Decision": "decision",
    "Violation": "decision",
    "Diagnostic": "errors",
    "InputError": "errors",
    "InternalError": "errors",
    "PolicyError": "errors",
    "QuantityError": "errors",
    "QuotalangError": "errors",
    "UserInputError": "errors",
    "Snapshot": "evaluator",
    "UsageSource": "decision",
    "evaluate": "evaluator",
}

__all__ = [
    "CompiledPolicy",
    "Decision",
    "Diagnostic",
    "InputError",
    "InternalError",
    "PolicyError",
    "QuantityError",
    "QuotalangError",
    "Snapshot",
    "UsageSource",
    "UserInputError",
    "Violation",
    "compile_policy",
    "compile_sources",
    "evaluate",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quotalang' has no attribute {name!r}")
    return getattr(importlib.import_module(f"quotalang.{module}"), name)
