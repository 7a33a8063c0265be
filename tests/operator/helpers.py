"""Running ``consentgate`` subcommands from a test beside an in-process hub."""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

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


def write_config(tmp_path: Path, port: int, hub_id: str, extra: str = "") -> Path:
    """Write the TOML of a hub as hub_config builds it (2 simulated devices), plus ``extra``."""
    path = tmp_path / "hub.toml"
    path.write_text(
        f'hub_id = "{hub_id}"\nstate_dir = "state-{hub_id}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nhealth_interval_s = 0.5\n'
        '[crypto]\nrecipient_public_key = "recipient/recipient.pub"\n'
        "[simulator]\ndevices = 2\nrate_hz = 2.0\n"
        "[discovery.mdns]\nenabled = false\n[discovery.ble]\nenabled = false\n" + extra,
        encoding="utf-8",
    )
    return path
