"""Envelope v1 (docs/envelope.md): epoch announcements and sealed records, both sides.

The hub seals with ``sealer.Sealer``; consumers open with ``consumer.Consumer`` (which needs
only ``cryptography`` and ``cbor2``) and, over MQTT, ``live.consume``. This package imports
nothing on purpose, so importing the consumer never pulls in the hub's dependencies.
"""
