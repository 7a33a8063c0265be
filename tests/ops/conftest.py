"""Fixtures of the operations tests: the broker configured from the shipped Mosquitto files."""

from tests.security.conftest import secure_broker

__all__ = ["secure_broker"]
