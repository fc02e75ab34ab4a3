"""The stock ledger on Redis/Valkey: Lua scripts, the async ledger, expiry and the model ledger."""
