"""Stage "dispatch": message assembly, the send run (ledger, rate limits, retries)."""
