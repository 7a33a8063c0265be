"""The one exception hierarchy of consentgate.

Library errors are converted at the boundary (``raise ConfigError(...) from exc``) so callers
handle a few typed errors whose messages tell the operator what to do. This module imports
nothing from the rest of the package: the consumer library depends on it on servers that have
only ``cryptography`` and ``cbor2``.
"""

from __future__ import annotations


class ConsentgateError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ConsentgateError):
    """A configuration file or value is invalid; ``key`` names where."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class StorageError(ConsentgateError):
    """The state directory or database cannot be used."""


class CommandError(ConsentgateError):
    """A control request is refused; ``code`` is one of the stable MQTT API error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StorageUnavailableError(StorageError, CommandError):
    """A write could not reach stable storage (disk full, read-only, I/O error); ``reason`` is
    ``full``, ``read_only`` or ``io_error``. Answered with the ``storage_unavailable`` code."""

    def __init__(self, reason: str, message: str) -> None:
        CommandError.__init__(self, "storage_unavailable", message)
        self.reason = reason


class DamagedStateError(StorageError):
    """The state directory holds a damaged or inconsistent state; the message says how to
    recover (``consentgate doctor``)."""


class EnvelopeError(ConsentgateError):
    """An envelope or announcement cannot be produced or opened (see gateway.envelope.errors)."""


class DeviceError(ConsentgateError):
    """A device answered badly or not at all; ``reason`` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
