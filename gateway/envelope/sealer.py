"""The hub side of envelope v1: epochs, announcements and sealed records as outbox rows.

``Sealer`` is pure: no files, no network, no clock but the injected ``clock``. The caller
persists ``epoch`` and ``last_announcement_hash`` after every rotation and hands them back to
the next start's ``Sealer`` so epoch numbers only go up and the ``prev`` chain continues.

A new epoch starts (``rotate``) at the first seal after a start, when the epoch has sealed
``max_records`` records (never more than 65536), when it is ``max_age_s`` old (measured on the
injected ``monotonic`` clock, so a wall-clock jump neither stops nor hastens rotation; the
wall ``clock`` only dates announcements and rows: docs/clock.md), and whenever the
caller asks (a recipient key change or a ``keys/rotate`` command). An epoch started by a call
with ``estimated=True`` (the hub's wall clock not trusted: ``gateway.clockgate``) is announced
with the core's ``"est": true`` marker, its ``nb``/``na`` being estimates. Each epoch's secret is 32
bytes from ``os.urandom``, held in a ``bytearray`` only long enough to wrap it for the
recipient and derive the AEAD key and base IV; when the next epoch starts the old key material
is overwritten with zeros and dropped (see ``keyschedule`` for what Python cannot wipe).
``seal_batch`` returns each announcement row ahead of the records of its epoch, so a publisher
that keeps outbox order delivers the announcement first.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gateway.envelope.cbor import bstr, head, uint
from gateway.envelope.errors import SealError
from gateway.envelope.format import (
    MAX_PLAINTEXT_SIZE,
    MAX_RECORDS,
    EpochCore,
    announcement_hash,
    enc_structure_prefix,
    encode_announcement,
    encode_body,
    encode_plaintext,
    encode_protected,
    epoch_window,
    external_aad_prefix,
    kid_of,
    record_prefix,
    signed_message,
)
from gateway.envelope.keys import recipient_kid
from gateway.envelope.keyschedule import (
    KEY_LENGTHS,
    SECRET_LENGTH,
    EpochKeys,
    partial_iv,
    wrap_secret,
)
from gateway.envelope.topics import DEVICE, SEGMENT, WORD, data_topic, epoch_topic
from gateway.model import EPOCH_CATEGORY, Observation, OutboxRow

REASON_START: Final = "start"
REASON_MAX_RECORDS: Final = "max_records"
REASON_MAX_AGE: Final = "max_age"
REASON_RECIPIENT: Final = "recipient_changed"
REASON_COMMAND: Final = "command"
# An announcement must outlive every record of its epoch in the outbox: the epoch's age plus
# the longest retention the configuration allows (366 days).
ANNOUNCEMENT_RETENTION_S: Final = 366 * 86400.0
_HISTORY: Final = 16
_MAX_VALIDATED: Final = 65536


@dataclass(frozen=True, slots=True)
class Rotation:
    """What the last ``rotate`` did, for the caller to persist and log."""

    epoch: int
    kid: bytes
    alg: int
    reason: str
    at: float


class _Route:
    """The per-epoch constant parts of the records of one (device, category)."""

    __slots__ = ("aad_prefix", "external_prefix", "record_prefix", "topic")

    def __init__(self, topic: str, protected: bytes, hub_id: str) -> None:
        self.topic = topic
        self.record_prefix = record_prefix(protected)
        self.aad_prefix = enc_structure_prefix(protected)
        self.external_prefix = external_aad_prefix(hub_id, topic)


class _Epoch:
    """The live state of the current epoch; ``wipe`` destroys its key material."""

    __slots__ = ("__weakref__", "keys", "kid", "number", "routes", "seq", "started")

    def __init__(self, number: int, kid: bytes, keys: EpochKeys, started: float) -> None:
        self.number = number
        self.kid = kid
        self.keys = keys
        self.started = started  # monotonic
        self.seq = 0
        self.routes: dict[tuple[str, str], _Route] = {}

    def wipe(self) -> None:
        self.keys.wipe()
        self.routes.clear()


class Sealer:
    """Seals observations into outbox rows under rotating epoch keys (pure; clock injected)."""

    def __init__(
        self,
        *,
        hub_id: str,
        topic_root: str,
        signing_key: Ed25519PrivateKey,
        recipient: X25519PublicKey,
        alg: int,
        max_records: int = MAX_RECORDS,
        max_age_s: float = 3600.0,
        last_epoch: int = 0,
        prev_hash: bytes = b"",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not SEGMENT.fullmatch(hub_id):  # a topic segment on every broker: no "."
            raise ValueError(f"hub id {hub_id!r} is not 1-64 of [A-Za-z0-9_-]")
        if alg not in KEY_LENGTHS:
            raise ValueError(f"alg {alg} is not 1 (A128GCM) or 24 (ChaCha20/Poly1305)")
        if not 1 <= max_records <= MAX_RECORDS:
            raise ValueError(f"max_records {max_records} is not in 1..{MAX_RECORDS}")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s {max_age_s} is not positive")
        if last_epoch < 0 or len(prev_hash) not in (0, 32):
            raise ValueError("last_epoch must be >= 0 and prev_hash empty or 32 bytes")
        self._hub_id = hub_id
        self._topic_root = topic_root
        self._signing_key = signing_key
        self._recipient = recipient
        self._alg = alg
        self._limit = max_records
        self._max_age_s = max_age_s
        self._last_epoch = last_epoch
        self._prev_hash = prev_hash
        self._clock = clock
        self._monotonic = monotonic
        self._current: _Epoch | None = None
        self._announcements: OrderedDict[bytes, bytes] = OrderedDict()
        self._validated: set[tuple[str, str]] = set()
        self._last_rotation: Rotation | None = None

    @property
    def epoch(self) -> int:
        """The number of the newest epoch (before the first rotation: the persisted one)."""
        return self._last_epoch

    @property
    def last_announcement_hash(self) -> bytes:
        """sha256 of the newest announcement (b"" if there never was one): persist it."""
        return self._prev_hash

    @property
    def kid(self) -> bytes | None:
        """The key id of the current epoch, or None before the first rotation."""
        return None if self._current is None else self._current.kid

    @property
    def seq(self) -> int:
        """How many records the current epoch has sealed."""
        return 0 if self._current is None else self._current.seq

    @property
    def last_rotation(self) -> Rotation | None:
        """What the newest rotation did, or None before the first."""
        return self._last_rotation

    def announcement(self, kid: bytes | None = None) -> bytes | None:
        """Return the announcement of epoch ``kid`` (default: the current one) if still known."""
        key = self.kid if kid is None else kid
        return None if key is None else self._announcements.get(key)

    @property
    def started_mono(self) -> float | None:
        """The monotonic time the current epoch started (None before the first rotation)."""
        return None if self._current is None else self._current.started

    def due(self, now: float) -> bool:
        """Return whether the next seal at monotonic time ``now`` will start a new epoch."""
        return self._rotation_reason(now) is not None

    def rotate(
        self,
        reason: str,
        *,
        recipient: X25519PublicKey | None = None,
        secret: bytes | None = None,
        wrapped: bytes | None = None,
        estimated: bool = False,
    ) -> OutboxRow:
        """Start the next epoch now and return its announcement as a retained outbox row.

        ``recipient`` replaces the recipient key from this epoch on. ``estimated`` marks the
        announcement's window as estimated (``"est": true``). ``secret`` (and the HPKE
        ``wrapped`` form of it) make the epoch deterministic: for test vectors only.
        """
        if recipient is not None:
            self._recipient = recipient
        return self._rotate(reason, self._clock(), secret, wrapped, estimated=estimated)[0]

    def seal_batch(
        self,
        observations: Sequence[Observation],
        ttl: Callable[[str], float],
        *,
        estimated: bool = False,
        arrived: Sequence[float] = (),
    ) -> list[OutboxRow]:
        """Seal ``observations`` in order; each epoch's announcement row precedes its records.

        An epoch this call starts is marked ``estimated`` when asked (see ``rotate``). The
        first ``len(arrived)`` records are dated (``created``, and ``expires`` = it + ttl) by
        when their reading arrived, the rest by now (readings that waited for a trusted
        clock: ``gateway.clockgate``). Raises
        SealError, before sealing anything, if an observation has a malformed device
        pseudonym or category, a value CBOR cannot encode, or a plaintext over the size limit.
        """
        now, mono = self._clock(), self._monotonic()
        plaintexts = [self._plaintext(obs) for obs in observations]
        rows: list[OutboxRow] = []
        state = self._current
        dates = chain(arrived, repeat(now)) if arrived else repeat(now)
        for obs, plaintext, created in zip(observations, plaintexts, dates, strict=False):
            reason = self._rotation_reason(mono)
            if reason is not None or state is None:
                announcement, state = self._rotate(reason or REASON_START, now, estimated=estimated)
                rows.append(announcement)
            route = state.routes.get((obs.device, obs.category))
            if route is None:
                route = self._route(state, obs.device, obs.category)
            seq = state.seq
            state.seq = seq + 1
            external = route.external_prefix + uint(seq)
            ciphertext = state.keys.seal(
                seq, plaintext, route.aad_prefix + head(2, len(external)) + external
            )
            rows.append(
                OutboxRow(
                    topic=route.topic,
                    payload=route.record_prefix + bstr(partial_iv(seq)) + bstr(ciphertext),
                    device=obs.device,
                    category=obs.category,
                    epoch=state.number,
                    created=created,
                    expires=created + ttl(obs.category),
                )
            )
        return rows

    def _rotation_reason(self, mono: float) -> str | None:
        state = self._current
        if state is None:
            return REASON_START
        if state.seq >= self._limit:
            return REASON_MAX_RECORDS
        if mono - state.started >= self._max_age_s:
            return REASON_MAX_AGE
        return None

    def _plaintext(self, obs: Observation) -> bytes:
        pair = (obs.device, obs.category)
        if pair not in self._validated:
            if not DEVICE.fullmatch(obs.device):
                raise SealError("a device pseudonym is not 16 lowercase hex digits")
            if not WORD.fullmatch(obs.category):
                raise SealError(f"category {obs.category!r} is not 1-64 of [A-Za-z0-9_.-]")
            if len(self._validated) >= _MAX_VALIDATED:
                self._validated.clear()
            self._validated.add(pair)
        plaintext = encode_plaintext(obs.ts, obs.fields)
        if len(plaintext) > MAX_PLAINTEXT_SIZE:
            raise SealError(
                f"a {obs.category} reading of {len(plaintext)} bytes exceeds the "
                f"{MAX_PLAINTEXT_SIZE}-byte record limit"
            )
        return plaintext

    def _route(self, state: _Epoch, device: str, category: str) -> _Route:
        protected = encode_protected(self._alg, state.kid, bytes.fromhex(device), category)
        route = _Route(data_topic(self._topic_root, device, category), protected, self._hub_id)
        state.routes[(device, category)] = route
        return route

    def _rotate(
        self,
        reason: str,
        now: float,
        secret: bytes | None = None,
        wrapped: bytes | None = None,
        *,
        estimated: bool = False,
    ) -> tuple[OutboxRow, _Epoch]:
        if wrapped is not None and secret is None:
            raise ValueError("a wrapped secret needs the secret it wraps")
        if secret is not None and len(secret) != SECRET_LENGTH:
            raise ValueError(f"an epoch secret is {SECRET_LENGTH} bytes")
        number = self._last_epoch + 1
        not_before, not_after = epoch_window(now, self._max_age_s)
        core = EpochCore(
            hub_id=self._hub_id,
            epoch=number,
            rkid=recipient_kid(self._recipient),
            alg=self._alg,
            not_before=not_before,
            not_after=not_after,
            prev=self._prev_hash,
            estimated=estimated,
        ).encode()
        buf = bytearray(os.urandom(SECRET_LENGTH) if secret is None else secret)
        try:
            if wrapped is None:
                wrapped = wrap_secret(buf, self._recipient, core)
            keys = EpochKeys(buf, self._hub_id, number, self._alg)
        finally:
            buf[:] = bytes(SECRET_LENGTH)
        body = encode_body(core, wrapped)
        announcement = encode_announcement(body, self._signing_key.sign(signed_message(body)))
        kid = kid_of(body)
        if self._current is not None:
            self._current.wipe()
        state = self._current = _Epoch(number, kid, keys, self._monotonic())
        self._last_epoch = number
        self._prev_hash = announcement_hash(announcement)
        self._announcements[kid] = announcement
        while len(self._announcements) > _HISTORY:
            self._announcements.popitem(last=False)
        self._last_rotation = Rotation(number, kid, self._alg, reason, now)
        row = OutboxRow(
            topic=epoch_topic(self._topic_root),
            payload=announcement,
            device="",
            category=EPOCH_CATEGORY,
            epoch=number,
            created=now,
            expires=now + self._max_age_s + ANNOUNCEMENT_RETENTION_S,
            retain=True,
        )
        return row, state

    def __repr__(self) -> str:
        return f"Sealer(hub_id={self._hub_id!r}, epoch={self._last_epoch}, <keys hidden>)"
