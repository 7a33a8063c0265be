"""The outbox's overflow policy, pure: what an incoming batch keeps and what makes room.

``drop_oldest`` deletes the oldest records (never announcements) until the batch fits;
``reject_new`` keeps, in order, what still fits of the batch (announcements always: they key
kept records), and an announcement kept past the cap displaces the newest records so the
outbox never holds more than its bounds. ``gateway.outbox.store`` carries the decision out
on the table and audits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import OutboxConfig
from gateway.model import EPOCH_CATEGORY, OutboxRow


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a batch: keep ``kept``; free ``oldest`` records from the oldest end,
    or ``newest_rows``/``newest_bytes`` from the newest end (records only)."""

    kept: list[OutboxRow]
    oldest: int = 0
    newest_rows: int = 0
    newest_bytes: int = 0


def fits(config: OutboxConfig, rows: int, size: int, incoming: int, incoming_bytes: int) -> bool:
    """Return whether ``incoming`` rows of ``incoming_bytes`` fit beside ``rows`` rows of
    ``size`` bytes."""
    return rows + incoming <= config.max_rows and size + incoming_bytes <= config.max_bytes


def decide(config: OutboxConfig, rows: int, size: int, batch: Sequence[OutboxRow]) -> Decision:
    """Return how ``batch`` enters an outbox holding ``rows`` rows of ``size`` bytes."""
    incoming_bytes = sum(len(r.payload) for r in batch)
    if config.overflow == "reject_new":
        room_rows, room_bytes = config.max_rows - rows, config.max_bytes - size
        kept = []
        for row in batch:
            length = len(row.payload)
            if row.category == EPOCH_CATEGORY or (room_rows > 0 and room_bytes >= length):
                kept.append(row)
                room_rows -= 1
                room_bytes -= length
        return Decision(kept, newest_rows=-room_rows, newest_bytes=-room_bytes)
    over_rows = rows + len(batch) - config.max_rows
    over_bytes = size + incoming_bytes - config.max_bytes
    average = max(1, (size + incoming_bytes) // max(1, rows + len(batch)))
    need = max(over_rows, -(-over_bytes // average) if over_bytes > 0 else 0)
    return Decision(list(batch), oldest=max(0, need))


def evict_from_batch(batch: list[OutboxRow], rows: int, size: int) -> tuple[int, int, int]:
    """Drop records (never announcements) newest first from ``batch`` (in place) until ``rows``
    rows and ``size`` bytes are freed; return (evicted, rows still to free, bytes still to
    free)."""
    evicted = 0
    for i in range(len(batch) - 1, -1, -1):
        if rows <= 0 and size <= 0:
            break
        if batch[i].category != EPOCH_CATEGORY:
            rows, size, evicted = rows - 1, size - len(batch[i].payload), evicted + 1
            del batch[i]
    return evicted, rows, size
