"""The sink schema, one list of migrations per backend, applied in order by the tool.

Version 1 (both backends):

``consentgate_records``: one row per opened record, primary key (hub, kid, seq).
  hub (text), kid (epoch key id, 8 bytes), seq (record number in its epoch), epoch (int),
  device (pseudonym, 16 hex digits), category (dotted name), ts (reading time, unix seconds),
  fields (JSON object; byte values as hex), received (unix seconds the sink stored it).
``consentgate_announcements``: one row per epoch announcement, primary key kid; hub, epoch,
  payload (the signed announcement bytes), received.
``consentgate_schema``: the single row ``version``.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1

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
)
