"""The tamper-evident audit log of every privacy-relevant action."""
