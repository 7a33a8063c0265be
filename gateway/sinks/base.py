"""The sink contract shared by every backend, and the URL that chooses one."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self

from gateway.envelope.consumer import OpenedRecord
from gateway.errors import ConsentgateError
from gateway.model import Value

JsonScalar = bool | int | float | str | None
_COMPACT = (",", ":")


class SinkError(ConsentgateError):
    """The sink cannot be opened or refused a write (nothing of the batch is committed)."""


@dataclass(frozen=True, slots=True)
class StoredAnnouncement:
    """An accepted epoch announcement as a sink keeps it (signed bytes, verified again on use)."""

    kid: bytes
    hub_id: str
    epoch: int
    payload: bytes
    # unix seconds the sink first stored it (None before it is stored): the fleet's first sight
    received: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A record whose epoch was unknown when it came, kept sealed (as the broker delivered it)
    until the epoch's announcement comes; parked, its message can be acknowledged at once."""

    kid: bytes
    hub_id: str
    topic: str
    payload: bytes
    id: int = field(default=0, compare=False)  # the sink's row id (0 before it is stored)


@dataclass(frozen=True, slots=True)
class Stored:
    """What one ``store`` committed: how many of its records were new, and which of the parked
    rows it was to delete it deleted (another member that opened the same rows first deleted
    the others, and reported their records)."""

    new: int
    unparked: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ParkedEpoch:
    """An epoch the sink holds parked records of: its key id, hub, one data topic, a count."""

    kid: bytes
    hub_id: str
    topic: str
    count: int


class Sink(Protocol):
    """A database of opened records and announcements; an async context manager."""

    async def __aenter__(self) -> Self:
        """Connect and bring the schema to the current version."""

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection."""

    async def store(
        self,
        records: Sequence[OpenedRecord],
        announcements: Sequence[StoredAnnouncement],
        *,
        parked: Sequence[ParkedRecord] = (),
        unparked: Sequence[int] = (),
    ) -> Stored:
        """Commit records and announcements, park ``parked`` and delete the parked rows of ids
        ``unparked``, in one transaction; return how many records were new and which rows of
        ``unparked`` it deleted."""

    async def announcement(self, kid: bytes) -> StoredAnnouncement | None:
        """Return the stored announcement of epoch ``kid``, or None."""

    async def parked(self, kid: bytes, limit: int) -> list[ParkedRecord]:
        """Return at most ``limit`` records parked for epoch ``kid``, oldest first."""

    async def parked_epochs(self) -> list[ParkedEpoch]:
        """Return every epoch that has parked records, with how many."""

    async def trim_parked(self, keep: int) -> int:
        """Delete the oldest parked records beyond ``keep``; return how many were deleted."""

    async def count(self) -> int:
        """Return how many records the sink holds."""


def json_value(value: Value) -> JsonScalar:
    """Return ``value`` as strict JSON holds it: bytes as hex, NaN and the infinities as the
    strings "NaN", "Infinity" and "-Infinity" (JSON has no such numbers); others unchanged."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def fields_json(record: OpenedRecord) -> str:
    """Return the record's fields as JSON text every database takes (``json_value`` of each
    value; a NUL in a name or a text value written as the six characters \\u0000)."""
    fields = record.fields
    try:  # the common record: no bytes to convert beyond hex, nothing non-finite, no NUL
        text = json.dumps(
            {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()},
            separators=_COMPACT,
            allow_nan=False,
        )
    except ValueError:
        text = ""
    if text and "\\u0000" not in text:
        return text
    # PostgreSQL's jsonb refuses NaN, Infinity and \u0000 alike: a batch holding one would never
    # commit, be acknowledged or end, and its redelivery would stall every member in turn.
    return json.dumps(
        {_no_nul(k): _no_nul(json_value(v)) for k, v in fields.items()},
        separators=_COMPACT,
        allow_nan=False,
    )


def _no_nul(value: JsonScalar) -> JsonScalar:
    return value.replace("\x00", "\\u0000") if isinstance(value, str) else value


def open_sink(url: str) -> Sink:
    """Return the sink named by ``url`` (not yet connected); raise SinkError for other URLs."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise SinkError("--sink sqlite://PATH needs a file path (sqlite:///abs/path.db)")
        from gateway.sinks.sqlite import SqliteSink  # noqa: PLC0415

        return SqliteSink(Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        # asyncpg is imported only for a PostgreSQL sink: the embedded default does without it.
        from gateway.sinks.postgres import PostgresSink  # noqa: PLC0415

        return PostgresSink(url)
    raise SinkError("--sink must be sqlite://PATH or postgresql://USER@HOST:PORT/DB")
