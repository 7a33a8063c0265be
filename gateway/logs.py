"""Structured logs: one JSON object per line on stdout (journald), no personal data.

Fields: ``ts level event component`` plus the record's ``extra`` context. Callers pass only
pseudonyms, counts and codes as context; ``redact`` is a second line of defence that masks
anything shaped like a MAC address, an IP address (a device's, in a library's error message) or
a long hex secret that slipped into a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Final, TextIO

_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_MAC: Final = re.compile(r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b")
_LONG_HEX: Final = re.compile(r"\b[0-9A-Fa-f]{32,}\b")
_IPV4: Final = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6: Final = re.compile(
    # after a non-word character, or after "key:" (a key name and its colon); groups of 1-4 hex
    # digits or "::"; _ipv6 keeps what has neither "::" nor five colons (a time of day)
    r"(?:(?<=\w:)|(?<![\w:]))(?:[0-9A-Fa-f]{1,4}|(?=::))(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])"
)


def redact(text: str) -> str:
    """Mask MAC addresses, IP addresses and long hex strings (keys, raw ids) in ``text``."""
    text = _IPV4.sub("<ip>", _LONG_HEX.sub("<hex>", _MAC.sub("<mac>", text)))
    return _IPV6.sub(_ipv6, text)


def _ipv6(match: re.Match[str]) -> str:
    found = match.group(0)
    return "<ip>" if "::" in found or found.count(":") >= 5 else found


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with its extra context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as a single JSON line (exceptions as a redacted string)."""
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": redact(record.getMessage()),
            "component": record.name.removeprefix("gateway.").removeprefix("drivers."),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, separators=(",", ":"))


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record of the process as JSON lines to ``stream`` (stdout by default)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party libraries log payload hex and addresses at DEBUG; keep them at WARNING.
    for noisy in (
        "aiomqtt",
        "paho",
        "zeroconf",
        "bleak",
        "aiosqlite",
        "asyncio",
        "amqtt",
        "transitions",
        "habluetooth",
        "bleak_retry_connector",
        "aiohttp",
        "aiohomekit",  # HAP requests and answers (values, keys), addresses, pairing ids
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.Formatter.converter = time.gmtime
