"""MQTT request/response commands (DESIGN.md section 4)."""
