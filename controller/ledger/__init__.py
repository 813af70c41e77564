"""The usage ledger: the store contract and its stores."""
