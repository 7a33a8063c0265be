"""The durable outbox and its publisher."""
