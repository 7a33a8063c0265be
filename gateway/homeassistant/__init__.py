"""Home Assistant MQTT discovery of the hub's controls and health (nothing personal)."""
