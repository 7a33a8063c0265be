"""Data-subject rights over MQTT: export (access, portability), erase, restrict, rename."""
