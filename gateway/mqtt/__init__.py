"""The hub's MQTT side: topics, the connection supervisor, and the outbox publisher's transport."""
