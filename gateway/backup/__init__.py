"""Encrypted backup and restore of what a new SD card needs to be the same hub."""
