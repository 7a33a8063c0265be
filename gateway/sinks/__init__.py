"""Where a consumer lands opened records: SQLite (embedded) or PostgreSQL (a fleet's database).

``open_sink(url)`` picks the backend from the URL: ``sqlite://PATH`` or
``postgresql://user@host:port/db``. Every backend keeps one table of opened records keyed by
(hub, epoch key id, seq), so a record redelivered to any member of a consumer group is stored
once, and one table of the epoch announcements seen, so any member can open any record.
"""

from gateway.sinks.base import Sink, SinkError, StoredAnnouncement, open_sink

__all__ = ["Sink", "SinkError", "StoredAnnouncement", "open_sink"]
