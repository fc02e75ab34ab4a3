"""Pure domain types and rules. Nothing in this package performs I/O."""
