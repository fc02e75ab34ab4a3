"""Service functions: what a request does, across routing and the ledger, without HTTP."""
