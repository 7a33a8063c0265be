"""Shared benchmark plumbing: a default-config broker, result files, peak memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway import daemon
from gateway.config import Config, parse_config
from gateway.demo.broker import Mosquitto
from gateway.envelope.keys import generate_recipient

RESULTS = Path(__file__).parent / "results"


def default_broker(workdir: Path, port: int | None = None) -> Mosquitto:
    """Start Mosquitto with the defaults users have (no TCP_NODELAY, no tuning)."""
    return Mosquitto(workdir, "allow_anonymous true\nmax_queued_messages 1000\n", port).start()


def peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    """Describe the machine the figures were measured on (CPU, memory, versions, date)."""
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from gateway.demo.broker import MOSQUITTO  # noqa: PLC0415

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    mosquitto = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [MOSQUITTO, "-h"], check=False, capture_output=True, text=True, timeout=5
        )
        mosquitto = out.stdout.splitlines()[0].split()[-1] if out.stdout else ""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": cpu,
        "mem_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "mosquitto": mosquitto,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_results(name: str, results: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``results`` (plus the machine) to ``path`` or bench/results/<name>.json; return it."""
    if path is None:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2, default=str) + "\n")
    return path


def bench_config(workdir: Path, port: int, hub_id: str, **sections: dict[str, Any]) -> Config:
    """Return a validated hub config under ``workdir``: own keys and state, transports off.

    Discovery stays off (no multicast, no system D-Bus): benchmarks drive readings directly or
    through the simulator, and every byte stays on loopback.
    """
    keys = workdir / "keys"
    if not (keys / "recipient.pub").exists():
        keys.mkdir(parents=True, exist_ok=True)
        generate_recipient(keys)
    raw: dict[str, Any] = {
        "hub_id": hub_id,
        "state_dir": str(workdir / "state"),
        "mqtt": {"host": "127.0.0.1", "port": port, "health_interval_s": 3600},
        "crypto": {"recipient_public_key": str(keys / "recipient.pub")},
        "discovery": {
            "mdns": {"enabled": False, "interfaces": ["127.0.0.1"]},
            "ble": {"enabled": False},
        },
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_config(raw, workdir)


def known_devices(hub: daemon.Hub, count: int, prefix: str = "bench") -> list[str]:
    """Return ``count`` device pseudonyms the hub accepts readings of (as simulated devices)."""
    devices = [hub.pseudonyms.device(f"{prefix}-{i}") for i in range(count)]
    hub.simulated.update(devices)
    return devices


@contextlib.asynccontextmanager
async def running_hub(config: Config) -> AsyncIterator[daemon.Hub]:
    """Run the daemon in this process for the block; stop it gracefully (drain) at the end."""
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon.run(config, stop, on_ready=ready.set_result), name="hub")
    waiting: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    if not done:
        task.cancel()
        raise RuntimeError("the hub did not become ready within 30 s")
    try:
        yield ready.result()
    finally:
        stop.set()
        await task
