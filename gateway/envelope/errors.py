"""Typed reasons why an envelope or epoch announcement is refused (docs/envelope.md).

Every refusal the consumer library makes is one of these subclasses of
``gateway.errors.EnvelopeError``; each carries a stable ``code`` string that the consume CLI
prints and that monitoring may count. No other exception type escapes the parsers for any input.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.errors import EnvelopeError


class MalformedError(EnvelopeError):
    """The bytes (or the topic) are not a well-formed v1 record or announcement."""

    code: ClassVar[str] = "malformed"


class UnknownEpochError(EnvelopeError):
    """A record names an epoch whose announcement this consumer has not accepted.

    ``hub_id``, ``kid`` and ``epoch`` are set when known, so the caller can ask the hub for an
    ``epoch/resend``.
    """

    code: ClassVar[str] = "unknown_epoch"

    def __init__(
        self,
        message: str,
        *,
        hub_id: str | None = None,
        kid: bytes | None = None,
        epoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.hub_id = hub_id
        self.kid = kid
        self.epoch = epoch


class ReplayError(EnvelopeError):
    """An authentic record whose sequence number was already opened in its epoch."""

    code: ClassVar[str] = "replay"


class ForgeryError(EnvelopeError):
    """A tag, signature or topic binding does not verify: the bytes were forged or altered."""

    code: ClassVar[str] = "forgery"


class ExpiredEpochError(EnvelopeError):
    """The epoch's acceptance window (its end plus the allowed delivery delay) has passed."""

    code: ClassVar[str] = "expired_epoch"


class UntrustedHubError(EnvelopeError):
    """An announcement, or a record of an epoch not accepted, comes from a hub that is not in
    the consumer's trust list (the record is refused, never held for an announcement)."""

    code: ClassVar[str] = "untrusted_hub"

    def __init__(self, message: str, *, hub_id: str) -> None:
        super().__init__(message)
        self.hub_id = hub_id


class WrongRecipientError(EnvelopeError):
    """An announcement wraps its epoch secret for another recipient key (``rkid`` differs)."""

    code: ClassVar[str] = "wrong_recipient"


class SealError(EnvelopeError):
    """The hub cannot seal an observation (bad pseudonym or category, value, or size)."""

    code: ClassVar[str] = "seal"
