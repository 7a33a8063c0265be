"""The hub's health report in Prometheus text format, for node_exporter's textfile collector.

The hub opens no listening socket: every ``[metrics] interval_s`` it writes the report to
``[metrics] textfile`` (a ``.prom`` file in the collector's directory), through a temporary
file in the same directory, fsynced and renamed over the old one, so node_exporter never reads
half a file (its documentation asks for exactly this). The format is Prometheus's text
exposition format 0.0.4: ``# HELP``, ``# TYPE``, then ``name{labels} value`` lines.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.clock import SYNCED
from gateway.config import MetricsConfig
from gateway.tasks import reraise_if_cancelling

logger = logging.getLogger(__name__)

PREFIX: Final = "consentgate"
_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of a metric family: its labels and value."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: name, type (gauge or counter), help text, samples."""

    name: str
    kind: str
    help: str
    samples: tuple[Sample, ...]


def families(health: Mapping[str, Any], hub_id: str) -> list[Family]:
    """Return the metric families of one health report (fields it lacks are left out)."""
    hub = (("hub", hub_id),)
    out: list[Family] = []

    def add(name: str, kind: str, text: str, value: object, **labels: str) -> None:
        number = _number(value)
        if number is not None:
            sample = Sample(hub + tuple(sorted(labels.items())), number)
            out.append(Family(f"{PREFIX}_{name}", kind, text, (sample,)))

    add("up", "gauge", "1 while the hub writes this file", 1)
    add("uptime_seconds", "gauge", "seconds since the daemon started", health.get("uptime_s"))
    add("broker_connected", "gauge", "1 while connected to the broker", health.get("connected"))
    add("broker_connects_total", "counter", "broker connections made", health.get("connects"))
    add("epoch", "gauge", "the current key epoch", health.get("epoch"))
    add("committed_total", "counter", "records committed to the outbox", health.get("committed"))
    outbox = _mapping(health.get("outbox"))
    add("outbox_rows", "gauge", "records waiting in the outbox", outbox.get("rows"))
    add("outbox_bytes", "gauge", "bytes of records waiting in the outbox", outbox.get("bytes"))
    add("outbox_inflight", "gauge", "records sent, PUBACK pending", outbox.get("inflight"))
    add("pipeline_queued", "gauge", "readings waiting for the pipeline", outbox.get("queued"))
    devices = _mapping(health.get("devices"))
    states = [
        Sample((*hub, ("state", str(k))), n)
        for k, v in sorted(devices.items())
        if (n := _number(v)) is not None
    ]
    if states:
        out.append(Family(f"{PREFIX}_devices", "gauge", "devices by state", tuple(states)))
    counters = [
        Sample((*hub, ("name", str(k))), n)
        for k, v in sorted(_mapping(health.get("counters")).items())
        if (n := _number(v)) is not None
    ]
    if counters:
        text = "hub event counters (dropped.<category>, purged.<category>, ...)"
        out.append(Family(f"{PREFIX}_events_total", "counter", text, tuple(counters)))
    clock = health.get("clock")  # "synced" or "unsynced"
    if isinstance(clock, str):
        add("clock_synced", "gauge", "1 while the wall clock is synchronised", clock == SYNCED)
    add("clock_held", "gauge", "readings held until the clock is trusted", health.get("clock_held"))
    storage = health.get("storage")  # {"state": "ok" or the fault, "faults": n, ...}
    state = storage.get("state") if isinstance(storage, Mapping) else storage
    if isinstance(state, str):
        add("storage_ok", "gauge", "1 while the database can be written", state == "ok")
    for key, value in _flat(_mapping(storage)):  # every number it holds
        add(f"storage_{key}", "gauge", f"health field storage.{key}", value)
    return out


def render(health: Mapping[str, Any], hub_id: str) -> str:
    """Return the health report as Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for family in families(health, hub_id):
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
            lines.append(f"{family.name}{{{labels}}} {_format(sample.value)}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: temporary file, fsync, rename (same directory)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # node_exporter runs as another user
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class MetricsWriter:
    """Writes the health report to the textfile every ``interval_s`` (and once at start)."""

    def __init__(
        self, config: MetricsConfig, hub_id: str, health: Callable[[], Mapping[str, Any]]
    ) -> None:
        if config.textfile is None:
            raise ValueError("MetricsWriter needs [metrics] textfile")
        self._path = config.textfile
        self._interval = config.interval_s
        self._hub_id = hub_id
        self._health = health
        self.writes = 0

    async def run(self) -> None:
        """Write the file now and then every interval, forever; a failed write is logged."""
        failing = False
        while True:
            text = render(self._health(), self._hub_id)
            try:
                await asyncio.to_thread(write_atomically, self._path, text)
            except OSError as exc:
                reraise_if_cancelling()
                if not failing:  # once per outage, not every interval
                    logger.warning(
                        "metrics file not written; check [metrics] textfile",
                        extra={"reason": exc.strerror or type(exc).__name__},
                    )
                failing = True
            else:
                failing = False
                self.writes += 1
            await asyncio.sleep(self._interval)


def _flat(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in values.items():
        name = _UNSAFE.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            yield from _flat(value, f"{name}_")
        else:
            yield name, value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _format(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
