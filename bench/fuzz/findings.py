"""What a fuzz target found: outcomes by kind, crashes grouped by where they happen, and
requests that never got an answer (``Hang``)."""

from __future__ import annotations

import asyncio
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

PROJECT_DIRS: Final = ("/gateway/", "/drivers/")


@dataclass
class Findings:
    """Outcomes of one target: counts by typed outcome, and crashes grouped by signature."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    covered: tuple[str, ...] = ()  # commands: every command the router has registered
    parameters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # commands: derived

    def crash(self, exc: BaseException, example: object) -> None:
        """Record an untyped exception raised on ``example``."""
        signature = _signature(exc)
        entry = self.crashes.setdefault(
            signature,
            {"count": 0, "example": _shown(example), "error": f"{type(exc).__name__}: {exc}"[:300]},
        )
        entry["count"] += 1

    @property
    def crash_count(self) -> int:
        """Return how many inputs crashed."""
        return sum(int(c["count"]) for c in self.crashes.values())

    def summary(self) -> dict[str, Any]:
        """Return the JSON-ready figures of this target."""
        return {
            "target": self.target,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "crashes": self.crash_count,
            "crash_kinds": self.crashes,
            "outcomes": dict(self.outcomes.most_common()),
            **({"parameters": self.parameters} if self.parameters else {}),
        }


def _signature(exc: BaseException) -> str:
    if isinstance(exc, Hang):
        waits = [f for f in exc.frames if any(d in f for d in PROJECT_DIRS)]
        return "Hang at " + project_path((waits or exc.frames or ["?"])[-1])
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if any(d in f.filename for d in PROJECT_DIRS)]
    if not (ours or frames):
        return type(exc).__name__
    where = (ours or frames)[-1]
    return f"{type(exc).__name__} at {project_path(where.filename)}:{where.lineno} ({where.name})"


def project_path(path: str) -> str:
    for marker in PROJECT_DIRS:
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    return path


def _shown(example: object) -> str:
    text = repr(example)
    return text if len(text) <= 600 else text[:600] + "..."


class Hang(Exception):  # noqa: N818 - named for the report line, "Hang at <frame>"
    """A request not answered within ANSWER_TIMEOUT_S; carries where the handler waits."""

    def __init__(self, task: asyncio.Task[Any], waited_s: float) -> None:
        where, waited = _await_chain(task.get_coro())
        super().__init__(
            f"no answer within {waited_s:g} s; waiting at "
            + " -> ".join(project_path(w) for w in where[-4:])
            + f" on {waited}"
        )
        self.frames = where


def _await_chain(coro: Any) -> tuple[list[str], str]:
    """Return the frames of a suspended coroutine chain, outermost first, and what it awaits."""
    frames: list[str] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})")
        inner = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        if inner is None or not (hasattr(inner, "cr_frame") or hasattr(inner, "ag_frame")):
            return frames, repr(inner)[:200]
        coro = inner
    return frames, "?"
