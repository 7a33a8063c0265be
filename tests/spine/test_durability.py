"""No committed reading is lost: across broker crashes, a broker absent at start, daemon crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.config import Config
from gateway.outbox.table import RECORDS
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto, free_port

STREAM = {"devices": 6, "rate_hz": 50.0}


async def test_broker_kill9_mid_stream_loses_nothing(own_broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(tmp_path, own_broker.port, "dur-broker", simulator=STREAM)
    sink = make_sink(config, own_broker.port, tmp_path)
    async with subscribed(sink):
        async with running_hub(config) as hub:
            await eventually(lambda: len(sink.opened) >= 50, what="stream flowing")
            own_broker.kill9()
            await asyncio.sleep(1.0)  # the hub keeps collecting into the outbox meanwhile
            assert hub.outbox.rows > 0
            own_broker.start()
            before = hub.pipeline.committed
            await eventually(
                lambda: len(sink.seqs()) >= before,
                timeout=20,
                what="backlog delivered after the broker came back",
            )
        committed = hub.pipeline.committed
        await eventually(
            lambda: len(sink.seqs()) >= committed, timeout=20, what="every committed record opened"
        )
    assert hub.link.connects >= 2
    assert sink.gaps() == []
    assert len(sink.seqs()) == committed
    assert not sink.errors


async def test_broker_absent_at_start_then_appears(tmp_path: Path) -> None:
    port = free_port()
    config = hub_config(tmp_path, port, "dur-late", simulator=STREAM)
    async with running_hub(config) as hub:
        await eventually(lambda: hub.pipeline.committed >= 100, what="buffering while no broker")
        assert not hub.link.connected.is_set()
        broker = Mosquitto(tmp_path / "late-broker", "allow_anonymous true", port=port).start()
        try:
            sink = make_sink(config, port, tmp_path)
            async with subscribed(sink):
                buffered = hub.pipeline.committed
                await eventually(
                    lambda: len(sink.seqs()) >= buffered,
                    timeout=20,
                    what="buffered records delivered",
                )
                assert sink.gaps() == []
                assert not sink.errors
        finally:
            broker.stop()


def _write_toml(config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'hub_id = "{config.hub_id}"\nstate_dir = "{config.state_dir}"\nlog_level = "DEBUG"\n'
        f"[mqtt]\nport = {config.mqtt.port}\nhealth_interval_s = 0.5\n"
        f'[crypto]\nrecipient_public_key = "{config.crypto.recipient_public_key}"\n'
        f"[simulator]\ndevices = 6\nrate_hz = 50.0\n"
    )
    return path


def _spawn(path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def test_daemon_kill9_and_restart_loses_no_committed_reading(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "dur-daemon")
    path = _write_toml(config, tmp_path)
    log = tmp_path / "daemon.log"
    sink = make_sink(config, broker.port, tmp_path)
    async with subscribed(sink):
        daemon = _spawn(path, log)
        try:
            await eventually(lambda: len(sink.opened) >= 100, timeout=20, what="first run")
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            first_epochs = {r.epoch for r in sink.opened}
            daemon = _spawn(path, log)
            await eventually(
                lambda: {r.epoch for r in sink.opened} - first_epochs != set(),
                timeout=20,
                what="records of the restarted daemon's epoch",
            )
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        await asyncio.sleep(0.5)
    assert sink.gaps() == []
    assert not sink.errors
    # the graceful stop flushed everything: nothing is left in the outbox
    with sqlite3.connect(config.state_dir / "outbox.db") as db:
        assert db.execute(f"SELECT COUNT(*) FROM outbox WHERE {RECORDS}").fetchone() == (0,)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["event"] == "daemon ready" for line in lines)
