"""MQTT request/response commands (docs/mqtt-api.md)."""
