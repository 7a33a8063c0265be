"""Task helpers: cancellation that third-party code may have swallowed is re-raised here, and
a component's loops run in a task group when it is used on its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar


def reraise_if_cancelling() -> None:
    """Raise CancelledError if the current task was asked to cancel.

    Python 3.11's ``asyncio.wait_for`` (used inside aiomqtt's publish and subscribe) can swallow
    a cancellation that races with its own completion; a loop that continues after such a call
    would then never stop. Call this after those awaits (CPython gh-86296, fixed in 3.12).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


Loop = Callable[[], Coroutine[Any, Any, None]]


class WithLoops(Protocol):
    """A component that is an async context manager and exposes its long-lived loops."""

    async def __aenter__(self) -> Any:
        """Open the component (starts nothing)."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        """Close the component."""
        ...

    def loops(self) -> dict[str, Loop]:
        """Return its loops by task name."""
        ...


C = TypeVar("C", bound=WithLoops)


@contextlib.asynccontextmanager
async def running(component: C) -> AsyncIterator[C]:
    """Open ``component`` and run its loops in a task group until the block ends (a component
    used on its own, outside the daemon, which runs them in its own task group)."""
    async with component, asyncio.TaskGroup() as group:
        tasks = [group.create_task(loop(), name=name) for name, loop in component.loops().items()]
        try:
            yield component
        finally:
            for task in tasks:
                task.cancel()
