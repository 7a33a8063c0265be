"""The whole configuration of one hub, and reading it: the file, its top-level keys, and each
section by the module that owns it."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.config.accountability import (
    AuditConfig,
    ClockConfig,
    CommandsConfig,
    parse_audit,
    parse_clock,
    parse_commands,
)
from gateway.config.devices import (
    DiscoveryConfig,
    SimulatorConfig,
    parse_discovery,
    parse_simulator,
)
from gateway.config.mqtt import MqttConfig, parse_mqtt
from gateway.config.operations import (
    HomeAssistantConfig,
    MetricsConfig,
    parse_homeassistant,
    parse_metrics,
)
from gateway.config.records import (
    ConsentConfig,
    CryptoConfig,
    OutboxConfig,
    RetentionConfig,
    parse_consent,
    parse_crypto,
    parse_outbox,
    parse_retention,
)
from gateway.config.table import TOPIC_WORD, Table, defaults
from gateway.errors import ConfigError
from gateway.timers import DEFAULT_SLACK_S

DEFAULT_CONFIG_PATH: Final = "/etc/consentgate/consentgate.toml"
CONFIG_ENV: Final = "CONSENTGATE_CONFIG"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration of one hub."""

    hub_id: str
    state_dir: Path
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    crypto: CryptoConfig = field(default_factory=CryptoConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log_level: str = "INFO"
    timer_slack_s: float = DEFAULT_SLACK_S

    @property
    def topic_root(self) -> str:
        """Return ``<base_topic>/<hub_id>``, the prefix of every topic of this hub."""
        return f"{self.mqtt.base_topic}/{self.hub_id}"


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the TOML file at ``path``; raise ConfigError naming the bad key."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("", f"config file {file} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"config file {file} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"config file {file} is not valid TOML: {exc}") from exc
    return parse_config(raw, base=file.parent.resolve())


def parse_config(raw: Mapping[str, Any], base: Path) -> Config:
    """Validate an already parsed TOML document; relative paths are resolved against ``base``."""
    top = Table(raw, "")
    hub_id = top.get("hub_id", str)
    if hub_id is None:
        raise ConfigError("hub_id", "missing; give the hub a name of 1-64 of [A-Za-z0-9_-]")
    if not TOPIC_WORD.fullmatch(hub_id):
        raise ConfigError(
            "hub_id",
            f"{hub_id!r} is not allowed; use 1-64 of [A-Za-z0-9_-] (no '.': not portable "
            "across brokers)",
        )
    state_dir = top.path_value("state_dir", base)
    if state_dir is None:
        raise ConfigError("state_dir", "missing; name a directory the daemon may write")
    config = Config(
        hub_id=hub_id,
        state_dir=state_dir,
        mqtt=parse_mqtt(top.table("mqtt"), base),
        crypto=parse_crypto(top.table("crypto"), base),
        outbox=parse_outbox(top.table("outbox")),
        simulator=parse_simulator(top.table("simulator")),
        retention=parse_retention(top.table("retention")),
        consent=parse_consent(top.table("consent")),
        discovery=parse_discovery(top.table("discovery")),
        audit=parse_audit(top.table("audit"), base),
        clock=parse_clock(top.table("clock")),
        commands=parse_commands(top.table("commands"), base),
        homeassistant=parse_homeassistant(top.table("homeassistant")),
        metrics=parse_metrics(top.table("metrics"), base),
        log_level=_log_level(top),
        timer_slack_s=top.number("timer_slack_s", defaults(Config)["timer_slack_s"], 0.0, 1.0),
    )
    top.done()
    return config


def _log_level(top: Table) -> str:
    d = defaults(Config)
    level: str = top.get("log_level", str, d["log_level"]).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level", f"{level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def resolve_config_path(explicit: str | None) -> str:
    """Return the config path: the explicit one, else $CONSENTGATE_CONFIG, else the default."""
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
