"""Private RabbitMQ (rabbitmq_mqtt) and NATS (MQTT gateway + JetStream) nodes on loopback.

Each has its own ports, data directory and (RabbitMQ) node name and epmd, so they never touch
the machine's own services on the default ports, and they start inside a private network
namespace (``unshare -n``, loopback only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Self

from gateway.demo.broker import free_port, wait_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
NATS_SERVER = "/usr/sbin/nats-server"
EPMD = "/usr/bin/epmd"


class _Process:
    """A broker started in its own process group, stopped with the whole group."""

    port: int
    workdir: Path
    procs: list[subprocess.Popen[bytes]]

    def _spawn(self, argv: list[str], env: dict[str, str] | None, name: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.procs.append(
                subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
            )

    def _wait(self, timeout: float, name: str) -> None:
        try:
            wait_port(self.port, timeout)
        except TimeoutError:
            self.stop()
            log = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start within {timeout} s: {log}") from None

    def kill9(self) -> None:
        """SIGKILL every process of the broker (no clean shutdown)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def stop(self) -> None:
        """Terminate the broker's process groups, then kill what is left."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()


class RabbitMQ(_Process):
    """A private RabbitMQ node (Debian's rabbitmq-server) with only rabbitmq_mqtt enabled."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"cg{uuid.uuid4().hex[:8]}@localhost"
        self.procs = []

    def env(self) -> dict[str, str]:
        """Return the environment that confines the node to ``workdir`` and its own ports."""
        conf = self.workdir / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "mqtt.default_user = guest\nmqtt.default_pass = guest\n"
            "loopback_users = none\n"
        )
        plugins = self.workdir / "enabled_plugins"
        plugins.write_text("[rabbitmq_mqtt].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **base,
            "HOME": str(self.workdir),  # the Erlang cookie lives here
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.workdir / "plugins-expand"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.workdir / "feature_flags"),
            "RABBITMQ_QUORUM_DIR": str(self.workdir / "quorum"),
            "RABBITMQ_STREAM_DIR": str(self.workdir / "stream"),
            "RABBITMQ_LOGS": str(self.workdir / "log" / "node.log"),
        }

    def start(self, timeout: float = 60.0) -> Self:
        """Start epmd and the node; wait until the MQTT listener accepts connections."""
        env = self.env()
        self._spawn([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"], env, "epmd")
        self._spawn([RABBITMQ_SERVER], env, "rabbitmq")
        started = time.monotonic()
        self._wait(timeout, "rabbitmq")
        self.started_in = time.monotonic() - started
        return self


class Nats(_Process):
    """A private nats-server with its MQTT listener and JetStream (MQTT needs it)."""

    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.client_port = free_port()
        self.extra_conf = extra_conf  # e.g. an authorization block
        self.procs = []

    def start(self, timeout: float = 20.0) -> Self:
        """Start the server; wait until the MQTT listener accepts connections."""
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"server_name: cg_{uuid.uuid4().hex[:8]}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{ store_dir: "{self.workdir / "js"}" }}\n'
            f"mqtt {{ host: 127.0.0.1, port: {self.port} }}\n{self.extra_conf}\n"
        )
        self._spawn([NATS_SERVER, "-c", str(conf)], None, "nats")
        self._wait(timeout, "nats")
        return self
