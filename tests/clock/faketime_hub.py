"""The real daemon as a child process under libfaketime: its wall clock is faked, its
monotonic clock is real (as on a Raspberry Pi without a real-time clock), and the test moves
the wall clock while it runs by rewriting an offset file (``FAKETIME_TIMESTAMP_FILE``)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiomqtt
import pytest

from gateway.config import Config, load_config
from tests.support.hub import RecordSink, eventually, make_sink
from tests.support.pump import pumping

# A year, for the jumps.
YEAR_S: Final = 365 * 86400
READY_S: Final = 30.0
# Set to 1 where these tests must run (CI): a missing libfaketime fails them instead of skipping.
REQUIRE_FAKETIME: Final = "CONSENTGATE_REQUIRE_FAKETIME"


def libfaketime() -> str:
    """Return the path of Debian's libfaketimeMT; without it, skip the test, or fail it when
    ``CONSENTGATE_REQUIRE_FAKETIME=1`` (as CI sets it: these tests must not vanish there)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        why = "libfaketime is not installed (./dev test installs the faketime package)"
        if os.environ.get(REQUIRE_FAKETIME) == "1":
            pytest.fail(f"{why}; {REQUIRE_FAKETIME}=1 requires it")
        pytest.skip(why)
    return found[0]


class FakedHub:
    """One daemon child whose wall clock runs ``offset`` seconds away from the real one."""

    def __init__(
        self, workdir: Path, port: int, hub_id: str, extra_toml: str, epoch_max_age_s: float
    ) -> None:
        self.workdir = workdir
        self.hub_id = hub_id
        self.offset_file = workdir / "faketime.offset"
        self.log_path = workdir / "daemon.log"
        keys = workdir / "recipient"
        if not (keys / "recipient.pub").exists():
            from gateway.envelope.keys import generate_recipient  # noqa: PLC0415

            keys.mkdir(parents=True, exist_ok=True)
            generate_recipient(keys)
        self.config_path = workdir / "hub.toml"
        self.config_path.write_text(
            f'hub_id = "{hub_id}"\nstate_dir = "{workdir / "state"}"\nlog_level = "INFO"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nhealth_interval_s = 0.3\n'
            f'[crypto]\nrecipient_public_key = "{keys / "recipient.pub"}"\n'
            f"epoch_max_age_s = {epoch_max_age_s}\n"
            '[discovery.mdns]\nenabled = false\ninterfaces = ["127.0.0.1"]\n'
            "[discovery.ble]\nenabled = false\n" + extra_toml
        )
        self.config: Config = load_config(self.config_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def set_offset(self, seconds: float) -> None:
        """Move the child's wall clock to real time + ``seconds`` (read within a second)."""
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+.0f}\n")
        tmp.replace(self.offset_file)

    def start(self, offset: float) -> None:
        """Start the child with its wall clock at real time + ``offset``."""
        self.set_offset(offset)
        env = {
            **os.environ,
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_CACHE_DURATION": "1",
            "DONT_FAKE_MONOTONIC": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def log(self) -> str:
        """Return what the child logged so far."""
        return self.log_path.read_text(errors="replace")

    async def wait_log(self, text: str, timeout: float = READY_S) -> None:
        """Wait until the child logged ``text``."""
        await eventually(lambda: text in self.log(), timeout, f"daemon log line {text!r}")

    def stop(self) -> int:
        """Stop the child gracefully (SIGTERM) and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the daemon did not stop; see {self.log_path}") from None
        return self.proc.returncode


@contextlib.asynccontextmanager
async def faked_hub(
    workdir: Path,
    port: int,
    hub_id: str,
    extra_toml: str,
    offset: float,
    epoch_max_age_s: float = 3600.0,
) -> AsyncIterator[FakedHub]:
    """Run a FakedHub while the block runs; stop it gracefully after (exit code 0)."""
    hub = FakedHub(workdir, port, hub_id, extra_toml, epoch_max_age_s)
    hub.start(offset)
    try:
        await hub.wait_log("daemon ready")
        yield hub
    finally:
        code = hub.stop()
    assert code == 0, hub.log()[-4000:]


class Watcher:
    """A consumer (the library, through RecordSink) plus the hub's retained health."""

    def __init__(self, hub: FakedHub, port: int) -> None:
        self.sink: RecordSink = make_sink(hub.config, port, hub.workdir)
        self.port = port
        self.health: dict[str, Any] = {}
        self.announcements = 0

    def handle(self, topic: str, payload: bytes) -> None:
        """Route one message: health is kept, the rest goes to the consumer library."""
        if topic.endswith("/health"):
            self.health = json.loads(payload)
            return
        if topic.endswith("/epoch"):
            self.announcements += 1
        self.sink.handle(topic, payload)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Subscribe (persistent session, reconnecting) while the block runs."""
        root = self.sink.config.topic_root

        def client() -> aiomqtt.Client:
            return aiomqtt.Client(
                "127.0.0.1", self.port, identifier=f"clock-test-{root}", clean_session=False
            )

        topics = [f"{root}/{suffix}" for suffix in ("epoch", "data/#", "health")]
        async with pumping(client, topics, self.handle, name="clock-test-consumer", retry_s=0.05):
            yield


def real_now() -> float:
    """Return the real wall-clock time (this process is not faked)."""
    return time.time()
