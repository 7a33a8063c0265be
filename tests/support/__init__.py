"""Helpers that start real components (Mosquitto, hubs) for the tests."""
