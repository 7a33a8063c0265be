"""A private MQTT broker on a free loopback port: Mosquitto when installed, else embedded amqtt."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Self

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 5.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port}")


class Mosquitto:
    """One broker process; ``kill9`` and ``start`` keep its port and persistence."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        """Return the path of the generated mosquitto.conf."""
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        """Write the broker config: loopback listener, persistence, generous queues."""
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf_path.write_text(
            f"{user}per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\nautosave_on_changes true\n"
            # Tests count every delivery: a QoS 1 subscriber must not lose messages to the
            # default per-client queue limit of 1000 (docs/performance.md).
            "max_queued_messages 1000000\n"
            f"{self.extra_conf}\n"
        )

    def start(self) -> Self:
        """Start the broker and wait until it accepts connections."""
        self.write_conf()
        stderr_path = self.workdir / "stderr.log"
        with stderr_path.open("ab") as stderr:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed binary, generated config
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
            err = stderr_path.read_text(errors="replace")
            raise RuntimeError(f"mosquitto did not start: {err}") from None
        return self

    def kill9(self) -> None:
        """Kill the broker with SIGKILL (no clean shutdown, no final save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Terminate the broker cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        """Return the broker's log file content."""
        return (self.workdir / "mosquitto.log").read_text(errors="replace")


def mosquitto_available() -> bool:
    """Return whether a mosquitto binary is installed."""
    return Path(MOSQUITTO).is_file()


class EmbeddedBroker:
    """amqtt in this process (MQTT 3.1.1 only): the demo's broker where Mosquitto is absent."""

    def __init__(self) -> None:
        self.port = free_port()
        self._broker: Any = None

    async def start(self) -> EmbeddedBroker:
        """Start listening on 127.0.0.1:``port``."""
        from amqtt.broker import Broker  # noqa: PLC0415 - optional extra, imported on demand

        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await self._broker.start()
        return self

    async def stop(self) -> None:
        """Stop the broker."""
        if self._broker is not None:
            await self._broker.shutdown()
