"""Running ``consentgate`` subcommands from a test beside an in-process hub."""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass

from gateway.cli import main


@dataclass(frozen=True)
class Run:
    """One command's exit code, standard output and standard error."""

    code: int
    out: str
    err: str


def _run(argv: list[str]) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Run(code, out.getvalue(), err.getvalue())


async def cli(*argv: str) -> Run:
    """Run ``consentgate ARGV`` in a thread (its own event loop) while the hub keeps running."""
    return await asyncio.to_thread(_run, list(argv))


async def ctl(port: int, hub_id: str, *argv: str) -> Run:
    """Run ``consentgate ctl ARGV`` against the hub ``hub_id`` on the loopback broker ``port``."""
    return await cli("ctl", *argv, "--host", "127.0.0.1", "--port", str(port), "--hub", hub_id)
