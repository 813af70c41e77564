"""The replicated ledger: one `QuotaLedger` object per group, shared by every replica by compare-and-swap.

Its knobs are one `Tuning` value (`tuning`), checked against each other when built.
"""
