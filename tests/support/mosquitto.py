"""The tests use the same private-Mosquitto launcher as the demo."""

from gateway.demo.broker import Mosquitto, free_port, wait_port

__all__ = ["Mosquitto", "free_port", "wait_port"]
