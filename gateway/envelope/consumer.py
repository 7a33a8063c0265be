"""The consumer library: verify epoch announcements, then open and de-duplicate records.

It needs only ``cryptography`` and ``cbor2`` (plus ``gateway.errors`` and this package), so a
cloud service can use it without the hub's dependencies.

- ``accept_announcement`` checks the hub is trusted, verifies its Ed25519 signature over
  b"consentgate-epoch" + body, checks the epoch was wrapped for this consumer's key (``rkid``),
  unwraps the epoch secret with HPKE and derives the record key. Accepting an epoch it already
  knows changes nothing: in particular its replay bitmap is never reset.
- ``open`` finds the epoch by the record's ``kid``, checks the topic names the record's hub,
  device and category, refuses epochs past their acceptance window, verifies the AEAD tag (the
  topic and seq are in the AAD), and only then checks and sets the exact per-epoch replay
  bitmap (one bit per seq). Records of an epoch may arrive in any order.
- An epoch whose announcement is marked ``"est": true`` (the hub started it before its clock
  was trusted, so ``nb``/``na`` are estimates) has its acceptance window measured from when it
  was first seen (``first_seen``, a sink's stored time, or when this consumer first accepted
  it): ``na - nb + accept_delay_s`` from then. Its window never outlasts a later epoch's of the
  hub, nor a later trusted one's ``nb + accept_delay_s`` (the hub sealed all its records before
  that epoch started), in whichever order they arrive. Records opened under it say
  ``ts_estimated``: their ``ts`` is the hub's best estimate.
- Memory is bounded: epochs are forgotten (and their keys wiped) once ``not_after +
  accept_delay_s`` has passed, and each hub keeps at most ``max_epochs_per_hub`` epochs. A hub's
  epoch evicted by that cap can never be accepted again (the hub's epoch floor rises), and an
  expired announcement is refused, so a forgotten epoch's bitmap cannot be reset by replaying
  its announcement.

Every refusal is a subclass of ``EnvelopeError`` (see ``gateway.envelope.errors``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.envelope.errors import (
    ExpiredEpochError,
    ForgeryError,
    MalformedError,
    ReplayError,
    UnknownEpochError,
    UntrustedHubError,
    WrongRecipientError,
)
from gateway.envelope.format import (
    MAX_ENVELOPE_SIZE,
    EpochCore,
    Value,
    decode_plaintext,
    parse_announcement,
    signed_message,
)
from gateway.envelope.hotpath import data_topic_aad, record_aad, split_record
from gateway.envelope.keys import recipient_kid
from gateway.envelope.keyschedule import SECRET_LENGTH, EpochKeys, unwrap_secret
from gateway.envelope.topics import category_segment, parse_epoch_topic
from gateway.errors import EnvelopeError

DEFAULT_ACCEPT_DELAY_S: Final = 7 * 86400.0
DEFAULT_MAX_EPOCHS_PER_HUB: Final = 512
_MAX_RETIRED: Final = 4096
_SWEEP_EVERY: Final = 4096


@dataclass(frozen=True, slots=True)
class EpochInfo:
    """An accepted epoch, without its keys."""

    hub_id: str
    epoch: int
    kid: bytes
    alg: int
    not_before: int
    not_after: int
    max_records: int
    prev: bytes
    estimated: bool = False  # nb/na are the hub's estimates ("est": its clock was untrusted)


@dataclass(frozen=True, slots=True)
class OpenedRecord:
    """A verified, decrypted record; ``device`` is the pseudonym as 16 hex digits."""

    hub_id: str
    device: str
    category: str
    epoch: int
    seq: int
    ts: float
    fields: Mapping[str, Value]
    kid: bytes  # the epoch's key id: (hub_id, kid, seq) names the record exactly once
    ts_estimated: bool = False  # sealed under an estimated epoch: ts is the hub's estimate


class _Epoch:
    __slots__ = ("deadline", "info", "keys", "seen")

    def __init__(self, info: EpochInfo, keys: EpochKeys, deadline: float) -> None:
        self.info = info
        self.keys = keys
        self.deadline = deadline
        self.seen: bytearray | None = None  # one bit per seq, allocated on the first record


class Consumer:
    """Opens the records of trusted hubs sealed for one recipient key."""

    def __init__(
        self,
        recipient_private_key: X25519PrivateKey,
        trust: Mapping[str, Ed25519PublicKey],
        *,
        clock: Callable[[], float] = time.time,
        accept_delay_s: float = DEFAULT_ACCEPT_DELAY_S,
        max_epochs_per_hub: int = DEFAULT_MAX_EPOCHS_PER_HUB,
    ) -> None:
        if max_epochs_per_hub < 1:
            raise ValueError("max_epochs_per_hub must be at least 1")
        self._key = recipient_private_key
        self._rkid = recipient_kid(recipient_private_key.public_key())
        self._trust = dict(trust)
        self._clock = clock
        self._accept_delay_s = accept_delay_s
        self._max_per_hub = max_epochs_per_hub
        self._epochs: dict[bytes, _Epoch] = {}
        self._hub_epochs: dict[str, dict[bytes, int]] = {}
        self._floor: dict[str, int] = {}
        # per hub: estimated epochs below this are refused (a later epoch's window has ended)
        self._estimated_floor: dict[str, int] = {}
        self._retired: OrderedDict[bytes, str] = OrderedDict()
        self._opens = 0

    @property
    def rkid(self) -> bytes:
        """The recipient key id of this consumer's key."""
        return self._rkid

    def epochs(self) -> list[EpochInfo]:
        """Return the epochs currently accepted, oldest epoch number first per hub."""
        return sorted((e.info for e in self._epochs.values()), key=lambda i: (i.hub_id, i.epoch))

    def knows(self, kid: bytes) -> bool:
        """Whether the epoch of key id ``kid`` is accepted and not yet forgotten."""
        return kid in self._epochs

    def accept_announcement(
        self, payload: bytes, topic: str | None = None, *, first_seen: float | None = None
    ) -> EpochInfo:
        """Verify and install an epoch announcement (idempotent); check ``topic`` if given.

        ``first_seen`` (unix seconds; now if None or later) is when the announcement was first
        seen, e.g. when a sink stored it: an estimated epoch's window counts from then.
        """
        if len(payload) > MAX_ENVELOPE_SIZE:
            raise MalformedError(f"the announcement is larger than {MAX_ENVELOPE_SIZE} bytes")
        announcement = parse_announcement(payload)
        core = announcement.core
        hub_key = self._trust.get(core.hub_id)
        if hub_key is None:
            raise UntrustedHubError(
                f"hub {core.hub_id!r} is not in the trust list", hub_id=core.hub_id
            )
        try:
            hub_key.verify(announcement.signature, signed_message(announcement.body))
        except InvalidSignature:
            raise ForgeryError(
                f"the announcement of epoch {core.epoch} does not carry hub "
                f"{core.hub_id!r}'s signature"
            ) from None
        if topic is not None and parse_epoch_topic(topic)[1] != core.hub_id:
            raise ForgeryError(
                f"an announcement of hub {core.hub_id!r} came on another hub's topic"
            )
        now = self._clock()
        self.forget_expired(now)
        known = self._epochs.get(announcement.kid)
        if known is not None:
            return known.info
        deadline = self._deadline(core, announcement.kid, now, first_seen)
        if core.rkid != self._rkid:
            raise WrongRecipientError(
                f"epoch {core.epoch} of hub {core.hub_id!r} is sealed for recipient key "
                f"{core.rkid.hex()}, not this consumer's {self._rkid.hex()}"
            )
        try:
            secret = unwrap_secret(announcement.wrapped, self._key, announcement.core_bytes)
        except InvalidTag:
            raise ForgeryError(
                f"the epoch secret of epoch {core.epoch} of hub {core.hub_id!r} does not unwrap"
            ) from None
        if len(secret) != SECRET_LENGTH:
            raise MalformedError(f"the epoch secret is {len(secret)} bytes, not {SECRET_LENGTH}")
        info = EpochInfo(
            hub_id=core.hub_id,
            epoch=core.epoch,
            kid=announcement.kid,
            alg=core.alg,
            not_before=core.not_before,
            not_after=core.not_after,
            max_records=core.max_records,
            prev=core.prev,
            estimated=core.estimated,
        )
        keys = EpochKeys(secret, core.hub_id, core.epoch, core.alg)
        self._epochs[info.kid] = state = _Epoch(info, keys, deadline)
        hub_epochs = self._hub_epochs.setdefault(info.hub_id, {})
        hub_epochs[info.kid] = info.epoch
        while len(hub_epochs) > self._max_per_hub:
            oldest = min(hub_epochs, key=hub_epochs.__getitem__)
            self._floor[info.hub_id] = max(self._floor.get(info.hub_id, 0), hub_epochs[oldest] + 1)
            self._retire(oldest)
        if info.kid not in self._epochs:
            raise ExpiredEpochError(
                f"epoch {info.epoch} of hub {info.hub_id!r} is older than the "
                f"{self._max_per_hub} epochs kept per hub"
            )
        self._cap_earlier(info.hub_id, info.epoch, self._bound(state), now)
        return info

    def _not_open(self, hub_id: str, kid: bytes) -> EnvelopeError:
        """Return why a record of hub ``hub_id`` under key id ``kid`` (no accepted epoch) is not
        opened: its epoch expired, its hub is not trusted, or its announcement is still due."""
        if kid in self._retired:
            return ExpiredEpochError(
                f"the epoch of key id {kid.hex()} of hub {self._retired[kid]!r} "
                "is past its acceptance window"
            )
        if hub_id not in self._trust:  # no announcement of it will ever be accepted
            return UntrustedHubError(f"hub {hub_id!r} is not in the trust list", hub_id=hub_id)
        return UnknownEpochError(
            f"no accepted epoch of hub {hub_id!r} has key id {kid.hex()}", hub_id=hub_id, kid=kid
        )

    def open(self, topic: str, payload: bytes) -> OpenedRecord:
        """Verify, decrypt and de-duplicate the record ``payload`` received on ``topic``."""
        if len(payload) > MAX_ENVELOPE_SIZE:
            raise MalformedError(f"the record is larger than {MAX_ENVELOPE_SIZE} bytes")
        where, external_prefix = data_topic_aad(topic)  # memoised per topic
        record = split_record(payload)
        header = record.header
        now = self._clock()
        self._opens += 1
        if self._opens % _SWEEP_EVERY == 0:
            self.forget_expired(now)
        state = self._epochs.get(header.kid)
        if state is not None and now > state.deadline:
            self._expire(header.kid)
            state = None
        if state is None:
            raise self._not_open(where.hub_id, header.kid)
        info = state.info
        if where.hub_id != info.hub_id:
            raise ForgeryError(f"a record of hub {info.hub_id!r} came on another hub's topic")
        if where.device != header.device.hex() or where.category != category_segment(
            header.category
        ):
            raise ForgeryError("the topic's device or category differs from the record's header")
        if header.alg != info.alg:
            raise ForgeryError(f"the record claims alg {header.alg}, its epoch uses {info.alg}")
        seq = record.seq
        if seq >= info.max_records:
            raise MalformedError(f"seq {seq} is beyond the epoch's maximum {info.max_records}")
        aad = record_aad(record.protected, external_prefix, seq)  # where.hub_id is info's
        try:
            plaintext = state.keys.open(seq, record.ciphertext, aad)
        except InvalidTag:
            raise ForgeryError(
                f"record {seq} of epoch {info.epoch} of hub {info.hub_id!r} does not verify"
            ) from None
        # Replay check only now that the tag has verified (docs/envelope.md).
        seen = state.seen
        if seen is None:
            seen = state.seen = bytearray((info.max_records + 7) // 8)
        index, bit = seq >> 3, 1 << (seq & 7)
        if seen[index] & bit:
            raise ReplayError(
                f"record {seq} of epoch {info.epoch} of hub {info.hub_id!r} was already opened"
            )
        seen[index] |= bit
        ts, fields = decode_plaintext(plaintext)
        return OpenedRecord(
            hub_id=info.hub_id,
            device=where.device,
            category=header.category,
            epoch=info.epoch,
            seq=seq,
            ts=ts,
            fields=fields,
            kid=header.kid,
            ts_estimated=info.estimated,
        )

    def forget_expired(self, now: float | None = None) -> int:
        """Forget (and wipe) every epoch past its acceptance window; return how many."""
        moment = self._clock() if now is None else now
        expired = [kid for kid, state in self._epochs.items() if moment > state.deadline]
        for kid in expired:
            self._expire(kid)
        return len(expired)

    def _deadline(self, core: EpochCore, kid: bytes, now: float, first_seen: float | None) -> float:
        """Return when a new epoch's acceptance window ends; raise ExpiredEpochError if past."""
        hub_id, epoch, delay = core.hub_id, core.epoch, self._accept_delay_s
        if kid in self._retired or epoch < self._floor.get(hub_id, 0):
            raise ExpiredEpochError(f"epoch {epoch} of hub {hub_id!r} was already forgotten")
        if not core.estimated:
            if now > core.not_after + delay:
                # signed by the hub: its earlier estimated epochs are older still
                self._cap_earlier(hub_id, epoch, core.not_before + delay, now)
                raise ExpiredEpochError(
                    f"epoch {epoch} of hub {hub_id!r} is past its acceptance window"
                )
            return core.not_after + delay
        cap = min(
            (
                self._bound(self._epochs[k])
                for k, n in self._hub_epochs.get(hub_id, {}).items()
                if n > epoch
            ),
            default=math.inf,
        )
        if epoch < self._estimated_floor.get(hub_id, 0) or now > cap:
            self._remember_retired(kid, hub_id)  # its records are refused as expired, not held
            raise ExpiredEpochError(
                f"estimated epoch {epoch} of hub {hub_id!r} is superseded: a later epoch shows "
                "its records are older than the acceptance delay"
            )
        seen = now if first_seen is None else min(first_seen, now)
        own = seen + (core.not_after - core.not_before) + delay
        if now > own:  # first seen (by a sink's account) longer ago than its window
            self._raise_estimated_floor(hub_id, epoch + 1)
            self._remember_retired(kid, hub_id)
            raise ExpiredEpochError(
                f"estimated epoch {epoch} of hub {hub_id!r} was first seen more than its "
                "acceptance window ago"
            )
        return min(own, cap)

    def _bound(self, state: _Epoch) -> float:
        """When the records of every earlier estimated epoch are older than the delay: a later
        trusted epoch's start plus the delay, or a later estimated epoch's own deadline."""
        info = state.info
        return state.deadline if info.estimated else info.not_before + self._accept_delay_s

    def _cap_earlier(self, hub_id: str, epoch: int, bound: float, now: float) -> None:
        """End the windows of ``hub_id``'s estimated epochs below ``epoch`` by ``bound`` at
        the latest; those past it are forgotten now (and refused from now on)."""
        if now > bound:
            self._raise_estimated_floor(hub_id, epoch)
        for kid, number in list(self._hub_epochs.get(hub_id, {}).items()):
            state = self._epochs[kid]
            if number < epoch and state.info.estimated:
                state.deadline = min(state.deadline, bound)
                if now > state.deadline:
                    self._expire(kid)

    def _raise_estimated_floor(self, hub_id: str, epoch: int) -> None:
        floor = self._estimated_floor
        floor[hub_id] = max(floor.get(hub_id, 0), epoch)

    def _expire(self, kid: bytes) -> None:
        """Retire ``kid`` at the end of its acceptance window; estimated epochs before it are
        refused from now on (their records are older still)."""
        info = self._epochs[kid].info
        self._raise_estimated_floor(info.hub_id, info.epoch + 1)
        self._retire(kid)

    def _retire(self, kid: bytes) -> None:
        state = self._epochs.pop(kid)
        state.keys.wipe()
        hub_id = state.info.hub_id
        hub_epochs = self._hub_epochs.get(hub_id, {})
        hub_epochs.pop(kid, None)
        if not hub_epochs:
            self._hub_epochs.pop(hub_id, None)
        self._remember_retired(kid, hub_id)

    def _remember_retired(self, kid: bytes, hub_id: str) -> None:
        self._retired[kid] = hub_id
        while len(self._retired) > _MAX_RETIRED:
            self._retired.popitem(last=False)

    def __repr__(self) -> str:
        return f"Consumer(rkid={self._rkid.hex()}, hubs={sorted(self._trust)}, <key hidden>)"
