"""The daemon as a child process (``python -m gateway run --config FILE``), as systemd runs it.

``DaemonProcess`` writes a TOML config, starts the child with ``NOTIFY_SOCKET`` pointing at an
AF_UNIX datagram socket of its own (the sd_notify protocol), and reports when ``READY=1``
arrives, the child's peak resident memory (``VmHWM`` in /proc/<pid>/status) and how it ended.
Used by P5 (bench.startup) and the daemon kill -9 campaign (bench.fault_kills).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.envelope.keys import generate_recipient

READY_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    """What the child daemon is configured with (written as TOML)."""

    hub_id: str
    workdir: Path
    port: int
    devices: int = 0
    rate_hz: float = 1.0
    log_level: str = "WARNING"
    mdns_loopback: bool = False
    extra_toml: str = ""  # more sections, appended as they are

    @property
    def state_dir(self) -> Path:
        """Return the daemon's state directory."""
        return self.workdir / "state"

    @property
    def recipient_dir(self) -> Path:
        """Return the directory holding the consumer's key pair."""
        return self.workdir / "recipient"

    def write(self) -> Path:
        """Write the recipient key pair (once) and the TOML config; return the config path."""
        if not (self.recipient_dir / "recipient.pub").exists():
            self.recipient_dir.mkdir(parents=True, exist_ok=True)
            generate_recipient(self.recipient_dir)
        mdns = "true" if self.mdns_loopback else "false"
        path = self.workdir / "hub.toml"
        path.write_text(
            f'hub_id = "{self.hub_id}"\n'
            f'state_dir = "{self.state_dir}"\n'
            f'log_level = "{self.log_level}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.port}\nhealth_interval_s = 5.0\n'
            f'[crypto]\nrecipient_public_key = "{self.recipient_dir / "recipient.pub"}"\n'
            f"[simulator]\ndevices = {self.devices}\nrate_hz = {self.rate_hz}\n"
            # Loopback only: mDNS never multicasts off the machine, BLE needs no D-Bus.
            f'[discovery.mdns]\nenabled = {mdns}\ninterfaces = ["127.0.0.1"]\n'
            "[discovery.ble]\nenabled = false\n" + self.extra_toml
        )
        return path


class DaemonProcess:
    """One child daemon: start, wait for READY=1, read its memory, stop or kill -9 it."""

    def __init__(self, spec: DaemonSpec) -> None:
        self.spec = spec
        self.config_path = spec.write()
        self.log_path = spec.workdir / "daemon.log"
        self.notify_path = spec.workdir / "notify.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._notify: socket.socket | None = None

    def start(self) -> None:
        """Start the child with its own NOTIFY_SOCKET (time zero is taken just before)."""
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self.notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_USEC", None)
        with self.log_path.open("ab") as log:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Return seconds from start to the child's ``READY=1``; raise if it never comes."""
        assert self._notify is not None
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._notify.settimeout(min(left, 0.5))
            try:
                message = self._notify.recv(4096)
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"daemon exited ({self.proc.returncode}) before READY; see {self.log_path}"
                    ) from None
                continue
            if b"READY=1" in message.split(b"\n"):
                return time.perf_counter() - self.started
        raise TimeoutError(f"no READY=1 within {timeout} s; see {self.log_path}")

    def status_kib(self, key: str) -> int:
        """Return a ``/proc/<pid>/status`` memory figure (``VmHWM``, ``VmRSS``) in KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        raise KeyError(key)

    def pss_kib(self) -> int:
        """Return the child's proportional set size in KiB (shared library pages split)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
        raise KeyError("Pss")

    def kill9(self) -> None:
        """Kill the child with SIGKILL and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_notify()

    def stop(self, timeout: float = 30.0) -> int:
        """Stop the child with SIGTERM (graceful: it drains) and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_notify()
                raise RuntimeError(f"daemon did not stop within {timeout} s") from None
        self._close_notify()
        return self.proc.returncode

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
            with contextlib.suppress(FileNotFoundError):
                self.notify_path.unlink()
