"""The sink schema, one list of migrations per backend, applied in order by the tool.

Version 1 (both backends):

``consentgate_records``: one row per opened record, primary key (hub, kid, seq).
  hub (text), kid (epoch key id, 8 bytes), seq (record number in its epoch), epoch (int),
  device (pseudonym, 16 hex digits), category (dotted name), ts (reading time, unix seconds),
  fields (JSON object; byte values as hex), received (unix seconds the sink stored it).
``consentgate_announcements``: one row per epoch announcement, primary key kid; hub, epoch,
  payload (the signed announcement bytes), received.
``consentgate_schema``: the single row ``version``.

Version 2: ``consentgate_records.ts_estimated`` (boolean, false for the rows of version 1): the
record was sealed under an epoch the hub announced while its clock was not trusted
(``"est": true``), so ``ts`` is the hub's estimate.

Version 3: ``consentgate_parked``: one row per parked record (a record whose epoch was unknown
when it came, kept sealed until its announcement comes), primary key id (ascending in arrival
order, never given twice: SQLite AUTOINCREMENT, a PostgreSQL sequence); kid, hub, topic (the
data topic it came on), payload (the sealed record), received.

A database whose version is newer than ``SCHEMA_VERSION`` is refused, never written.
"""

from __future__ import annotations

from typing import Final

from gateway.sinks.base import SinkError

SCHEMA_VERSION: Final = 3

SQLITE_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE consentgate_records (
            hub TEXT NOT NULL, kid BLOB NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,
            device TEXT NOT NULL, category TEXT NOT NULL, ts REAL NOT NULL,
            fields TEXT NOT NULL, received REAL NOT NULL,
            PRIMARY KEY (hub, kid, seq)) WITHOUT ROWID""",
        """CREATE TABLE consentgate_announcements (
            kid BLOB PRIMARY KEY, hub TEXT NOT NULL, epoch INTEGER NOT NULL,
            payload BLOB NOT NULL, received REAL NOT NULL)""",
    ),
    (
        """ALTER TABLE consentgate_records
            ADD COLUMN ts_estimated INTEGER NOT NULL DEFAULT 0""",
    ),
    (
        """CREATE TABLE consentgate_parked (
            id INTEGER PRIMARY KEY AUTOINCREMENT, kid BLOB NOT NULL, hub TEXT NOT NULL,
            topic TEXT NOT NULL, payload BLOB NOT NULL, received REAL NOT NULL)""",
        "CREATE INDEX consentgate_parked_kid ON consentgate_parked (kid, id)",
    ),
)

POSTGRES_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE consentgate_records (
            hub text NOT NULL, kid bytea NOT NULL, seq integer NOT NULL, epoch bigint NOT NULL,
            device text NOT NULL, category text NOT NULL, ts double precision NOT NULL,
            fields jsonb NOT NULL, received timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (hub, kid, seq))""",
        """CREATE TABLE consentgate_announcements (
            kid bytea PRIMARY KEY, hub text NOT NULL, epoch bigint NOT NULL,
            payload bytea NOT NULL, received timestamptz NOT NULL DEFAULT now())""",
    ),
    (
        """ALTER TABLE consentgate_records
            ADD COLUMN ts_estimated boolean NOT NULL DEFAULT false""",
    ),
    (
        """CREATE TABLE consentgate_parked (
            id bigserial PRIMARY KEY, kid bytea NOT NULL, hub text NOT NULL, topic text NOT NULL,
            payload bytea NOT NULL, received timestamptz NOT NULL DEFAULT now())""",
        "CREATE INDEX consentgate_parked_kid ON consentgate_parked (kid, id)",
    ),
)


def check_version(version: int) -> None:
    """Raise SinkError when a database's schema ``version`` is newer than this tool's."""
    if version > SCHEMA_VERSION:
        raise SinkError(
            f"the sink's schema is version {version}, newer than this consentgate's "
            f"{SCHEMA_VERSION}: upgrade consentgate (the database is left as it is)"
        )
