"""The operator's opt-in tables: ``[homeassistant]`` and ``[metrics]``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config.table import BASE_TOPIC, Table, defaults
from gateway.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery of the hub's controls (off unless enabled)."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    permit_join_s: int = 60


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Health counters written for node_exporter's textfile collector (no file: off)."""

    textfile: Path | None = None
    interval_s: float = 15.0


def parse_homeassistant(t: Table) -> HomeAssistantConfig:
    """Validate the ``[homeassistant]`` table."""
    d = defaults(HomeAssistantConfig)
    prefix = t.get("discovery_prefix", str, d["discovery_prefix"])
    if not BASE_TOPIC.fullmatch(prefix):
        raise ConfigError(
            t.key("discovery_prefix"), f"{prefix!r} is not a plain topic prefix (no wildcards)"
        )
    config = HomeAssistantConfig(
        enabled=t.get("enabled", bool, d["enabled"]),
        discovery_prefix=prefix,
        permit_join_s=t.integer("permit_join_s", d["permit_join_s"], 1, 3600),
    )
    t.done()
    return config


def parse_metrics(t: Table, base: Path) -> MetricsConfig:
    """Validate the ``[metrics]`` table; the textfile path is resolved against ``base``."""
    d = defaults(MetricsConfig)
    textfile = t.path_value("textfile", base)
    if textfile is not None and textfile.suffix != ".prom":
        raise ConfigError(
            t.key("textfile"),
            f"{str(textfile)!r} must end in .prom (node_exporter reads only those)",
        )
    config = MetricsConfig(
        textfile=textfile,
        interval_s=t.number("interval_s", d["interval_s"], 0.05, 3600.0),
    )
    t.done()
    return config
