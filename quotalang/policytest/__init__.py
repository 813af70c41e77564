"""Policy unit tests: `*.test.yaml` files of chained admission cases, run in CI.

Layers, one job each: `yamlsrc` (YAML with line numbers), `spec` (the file
format), `chain` (usage carried between cases), `expect` (decision versus
expectation), `runner` (discovery and execution), `report` (text, json,
junit, github). The CLI uses `Runner` and `report`.
"""

from __future__ import annotations

from quotalang.policytest.runner import CaseResult, Coverage, Report, Runner, discover

__all__ = ["CaseResult", "Coverage", "Report", "Runner", "discover"]
