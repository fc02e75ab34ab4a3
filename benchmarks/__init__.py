"""Benchmarks: ``python -m benchmarks.ledger_bench`` (``make bench``)."""
