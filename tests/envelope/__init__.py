"""Tests of envelope v1: format, sealer, consumer, keys, CLI and the live consume loop."""
