"""Task helpers: cancellation that third-party code may have swallowed is re-raised here."""

from __future__ import annotations

import asyncio


def reraise_if_cancelling() -> None:
    """Raise CancelledError if the current task was asked to cancel.

    Python 3.11's ``asyncio.wait_for`` (used inside aiomqtt's publish and subscribe) can swallow
    a cancellation that races with its own completion; a loop that continues after such a call
    would then never stop. Call this after those awaits (CPython gh-86296, fixed in 3.12).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
