"""The sink contract shared by every backend, and the URL that chooses one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from gateway.envelope.consumer import OpenedRecord
from gateway.errors import ConsentgateError


class SinkError(ConsentgateError):
    """The sink cannot be opened or refused a write (nothing of the batch is committed)."""


@dataclass(frozen=True, slots=True)
class StoredAnnouncement:
    """An accepted epoch announcement as a sink keeps it (signed bytes, verified again on use)."""

    kid: bytes
    hub_id: str
    epoch: int
    payload: bytes


class Sink(Protocol):
    """A database of opened records and announcements; an async context manager."""

    async def __aenter__(self) -> Self:
        """Connect and bring the schema to the current version."""

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection."""

    async def store(
        self, records: Sequence[OpenedRecord], announcements: Sequence[StoredAnnouncement]
    ) -> int:
        """Commit records and announcements in one transaction; return how many records were new."""

    async def announcement(self, kid: bytes) -> StoredAnnouncement | None:
        """Return the stored announcement of epoch ``kid``, or None."""

    async def count(self) -> int:
        """Return how many records the sink holds."""


def fields_json(record: OpenedRecord) -> str:
    """Return the record's fields as JSON text (byte values as hex, as ``consume`` prints them)."""
    return json.dumps(
        {k: v.hex() if isinstance(v, bytes) else v for k, v in record.fields.items()},
        separators=(",", ":"),
    )


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
