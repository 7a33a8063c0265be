"""Where a consumer lands opened records: SQLite (embedded) or PostgreSQL (a fleet's database).

``open_sink(url)`` picks the backend from the URL: ``sqlite://PATH`` or
``postgresql://user@host:port/db``. Every backend keeps one table of opened records keyed by
(hub, epoch key id, seq), so a record redelivered to any member of a consumer group is stored
once, one table of the epoch announcements seen, so any member can open any record, and one
table of parked records: sealed records whose epoch was not yet known, acknowledged to the
broker once parked and opened by whichever member accepts their announcement.
"""

from gateway.sinks.base import (
    ParkedEpoch,
    ParkedRecord,
    Sink,
    SinkError,
    Stored,
    StoredAnnouncement,
    open_sink,
)

__all__ = [
    "ParkedEpoch",
    "ParkedRecord",
    "Sink",
    "SinkError",
    "Stored",
    "StoredAnnouncement",
    "open_sink",
]
