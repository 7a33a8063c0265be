"""The TOML configuration, validated once at start-up into frozen objects.

Every error names the key, the bad value and what is allowed. Secrets are never in the TOML:
only paths to files holding them (or names of systemd credentials).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from gateway.consent.catalogue import CATEGORIES
from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH: Final = "/etc/consentgate/consentgate.toml"
CONFIG_ENV: Final = "CONSENTGATE_CONFIG"
OVERFLOW_POLICIES: Final = ("drop_oldest", "reject_new")
# The port when [mqtt.tls] is set and no port is given (MQTT over TLS).
MQTT_TLS_PORT: Final = 8883
# Portable topic segments (no "."): RabbitMQ swaps "." and "/", NATS < 2.10 refuses "." in topics.
_TOPIC_WORD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BASE_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Paths of the CA bundle and the optional client certificate and key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where and how the hub reaches its broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    base_topic: str = "consentgate"
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    protocol: int = 5
    keepalive_s: int = 30
    health_interval_s: float = 30.0
    max_inflight: int = 250


@dataclass(frozen=True, slots=True)
class CryptoConfig:
    """The recipient of sealed records and the epoch rotation limits."""

    recipient_public_key: Path | None = None
    epoch_max_age_s: float = 3600.0
    epoch_max_records: int = 65536
    alg: str = "auto"


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """Bounds of the durable outbox and what happens when they are reached."""

    max_rows: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024
    overflow: str = "drop_oldest"
    batch_size: int = 1000
    # Sealed records reach SQLite in group commits at most this often; a record the broker
    # acknowledged before its group commit is never written (SD-card wear). A power cut may
    # lose the records of the last interval that the broker had not acknowledged yet.
    commit_interval_s: float = 1.0
    # While storage is faulty, at most this many records wait in memory; more are refused.
    memory_rows: int = 20_000


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Virtual devices for running the chain without hardware; 0 devices disables it.

    ``ble_devices`` virtual BLE sensors advertise into the BLE transport in place of the radio
    (real advertisement bytes through the real decoders); they are candidates until paired.
    """

    devices: int = 0
    rate_hz: float = 1.0
    ble_devices: int = 0


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    """How desensitised ("coarse") forms are made."""

    aggregate_window_s: float = 300.0


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How long a record of each category may wait in the outbox before it is destroyed."""

    default_s: float = 7 * 86400.0
    per_category: Mapping[str, float] = field(default_factory=dict)
    sweep_interval_s: float = 60.0

    def ttl(self, category: str) -> float:
        """Return the time to live in seconds of a record of ``category``."""
        return self.per_category.get(category, self.default_s)


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """When the audit log is checkpointed (signed with the hub key)."""

    checkpoint_every: int = 100
    checkpoint_interval_s: float = 300.0
    # The size budget of the audit log in the database (entries are ~300-600 bytes); past it
    # the oldest entries move to files in archive_dir (default state_dir/audit-archive),
    # verifiable with `consentgate audit verify --archive FILE`.
    max_entries: int = 50_000
    archive_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class ClockConfig:
    """When the wall clock is trusted and how many readings wait for it (docs/clock.md)."""

    # "auto": a running time-sync service must report sync; without one the floor decides.
    require_sync: str = "auto"
    hold_max_records: int = 20_000


@dataclass(frozen=True, slots=True)
class CommandsConfig:
    """Ed25519 public keys (raw 32 bytes) that sign ``consent/set``, ``erase``, ``export``.

    Empty: commands are not signed (the broker's ACL alone decides who may send them).
    """

    signing_keys: tuple[bytes, ...] = ()


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


@dataclass(frozen=True, slots=True)
class MdnsConfig:
    """Wi-Fi discovery over mDNS/DNS-SD; empty ``interfaces`` means every interface."""

    enabled: bool = True
    interfaces: tuple[str, ...] = ()
    poll_interval_s: float = 10.0
    http_timeout_s: float = 5.0
    offline_after_s: float = 60.0


@dataclass(frozen=True, slots=True)
class BleConfig:
    """BLE discovery with bleak; MAC allow/deny lists stay on the hub and are never logged."""

    enabled: bool = True
    adapter: str = "hci0"
    scanning_mode: str = "passive"
    watchdog_s: float = 60.0
    min_rssi: int = -100
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    offline_after_s: float = 300.0
    connect_attempts: int = 3


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Where discovery listens."""

    mdns: MdnsConfig = field(default_factory=MdnsConfig)
    ble: BleConfig = field(default_factory=BleConfig)


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

    @property
    def topic_root(self) -> str:
        """Return ``<base_topic>/<hub_id>``, the prefix of every topic of this hub."""
        return f"{self.mqtt.base_topic}/{self.hub_id}"


class _Table:
    """A TOML table being read: tracks the key path and rejects unknown keys."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            raise ConfigError(self.key(name), f"{value!r} is a boolean; expected {_kind(kind)}")
        if not isinstance(value, kind):
            raise ConfigError(self.key(name), f"{value!r} is not {_kind(kind)}")
        return value

    def number(self, name: str, default: float, minimum: float, maximum: float) -> float:
        value = float(self.get(name, (int, float), default))
        if not minimum <= value <= maximum:
            raise ConfigError(self.key(name), f"{value!r} is out of range [{minimum}, {maximum}]")
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        value: int = self.get(name, int, default)
        if not minimum <= value <= maximum:
            raise ConfigError(self.key(name), f"{value!r} is out of range [{minimum}, {maximum}]")
        return value

    def path_value(self, name: str, base: Path) -> Path | None:
        value: str | None = self.get(name, str)
        if value is None:
            return None
        if not value:
            raise ConfigError(self.key(name), "'' is not a path; remove the key or give a file")
        return (base / value).resolve()

    def table(self, name: str) -> _Table:
        value = self.get(name, dict, {})
        return _Table(value, self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            allowed = ", ".join(sorted(self.used))
            raise ConfigError(self.key(unknown[0]), f"unknown key; allowed here: {allowed}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def _defaults(cls: type[Any]) -> dict[str, Any]:
    """Return field name -> declared default of dataclass ``cls``: the single source of them."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


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
    top = _Table(raw, "")
    hub_id = top.get("hub_id", str)
    if hub_id is None:
        raise ConfigError("hub_id", "missing; give the hub a name of 1-64 of [A-Za-z0-9_-]")
    if not _TOPIC_WORD.match(hub_id):
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
        mqtt=_mqtt(top.table("mqtt"), base),
        crypto=_crypto(top.table("crypto"), base),
        outbox=_outbox(top.table("outbox")),
        simulator=_simulator(top.table("simulator")),
        retention=_retention(top.table("retention")),
        consent=_consent(top.table("consent")),
        discovery=_discovery(top.table("discovery")),
        audit=_audit(top.table("audit"), base),
        clock=_clock(top.table("clock")),
        commands=_commands(top.table("commands"), base),
        homeassistant=_homeassistant(top.table("homeassistant")),
        metrics=_metrics(top.table("metrics"), base),
        log_level=_log_level(top),
    )
    top.done()
    return config


def _log_level(top: _Table) -> str:
    d = _defaults(Config)
    level: str = top.get("log_level", str, d["log_level"]).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level", f"{level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _mqtt(t: _Table, base: Path) -> MqttConfig:
    d = _defaults(MqttConfig)
    base_topic = t.get("base_topic", str, d["base_topic"])
    if not _BASE_TOPIC.match(base_topic):
        raise ConfigError(
            t.key("base_topic"),
            f"{base_topic!r} is not a plain topic prefix "
            "(1-4 levels of [A-Za-z0-9_-], no wildcards, no '.')",
        )
    protocol = t.integer("protocol", d["protocol"], 4, 5)
    tls_table = t.table("tls")
    tls = None
    if tls_table.data:
        ca = tls_table.path_value("ca", base)
        if ca is None:
            raise ConfigError(tls_table.key("ca"), "missing; TLS needs the CA certificate file")
        cert, key = tls_table.path_value("cert", base), tls_table.path_value("key", base)
        if (cert is None) != (key is None):
            raise ConfigError(tls_table.key("cert"), "cert and key go together; give both or none")
        tls = TlsConfig(ca=ca, cert=cert, key=key)
    tls_table.done()
    config = MqttConfig(
        host=t.get("host", str, d["host"]),
        port=t.integer("port", MQTT_TLS_PORT if tls else d["port"], 1, 65535),
        base_topic=base_topic,
        username=t.get("username", str),
        password_file=t.path_value("password_file", base),
        tls=tls,
        protocol=protocol,
        keepalive_s=t.integer("keepalive_s", d["keepalive_s"], 5, 3600),
        health_interval_s=t.number("health_interval_s", d["health_interval_s"], 0.05, 86400.0),
        max_inflight=t.integer("max_inflight", d["max_inflight"], 1, 65535),
    )
    if "password" in t.data:
        raise ConfigError(t.key("password"), "secrets never go in the TOML; use password_file")
    t.done()
    return config


def _crypto(t: _Table, base: Path) -> CryptoConfig:
    d = _defaults(CryptoConfig)
    alg = t.get("alg", (str, int), d["alg"])
    if str(alg) not in ("auto", "1", "24"):
        raise ConfigError(
            t.key("alg"), f'{alg!r} is not one of "auto", 1 (A128GCM), 24 (ChaCha20/Poly1305)'
        )
    config = CryptoConfig(
        recipient_public_key=t.path_value("recipient_public_key", base),
        epoch_max_age_s=t.number("epoch_max_age_s", d["epoch_max_age_s"], 1.0, 7 * 86400.0),
        epoch_max_records=t.integer("epoch_max_records", d["epoch_max_records"], 1, 65536),
        alg=str(alg),
    )
    t.done()
    return config


def _outbox(t: _Table) -> OutboxConfig:
    d = _defaults(OutboxConfig)
    overflow = t.get("overflow", str, d["overflow"])
    if overflow not in OVERFLOW_POLICIES:
        raise ConfigError(
            t.key("overflow"), f"{overflow!r} is not one of " + ", ".join(OVERFLOW_POLICIES)
        )
    config = OutboxConfig(
        max_rows=t.integer("max_rows", d["max_rows"], 100, 100_000_000),
        max_bytes=t.integer("max_bytes", d["max_bytes"], 64 * 1024, 64 * 1024**3),
        overflow=overflow,
        batch_size=t.integer("batch_size", d["batch_size"], 1, 10_000),
        commit_interval_s=t.number("commit_interval_s", d["commit_interval_s"], 0.0, 60.0),
        memory_rows=t.integer("memory_rows", d["memory_rows"], 100, 1_000_000),
    )
    t.done()
    return config


def _simulator(t: _Table) -> SimulatorConfig:
    d = _defaults(SimulatorConfig)
    config = SimulatorConfig(
        devices=t.integer("devices", d["devices"], 0, 100_000),
        rate_hz=t.number("rate_hz", d["rate_hz"], 0.001, 1000.0),
        ble_devices=t.integer("ble_devices", d["ble_devices"], 0, 10_000),
    )
    t.done()
    return config


def _consent(t: _Table) -> ConsentConfig:
    d = _defaults(ConsentConfig)
    config = ConsentConfig(
        aggregate_window_s=t.number("aggregate_window_s", d["aggregate_window_s"], 1.0, 86400.0),
    )
    t.done()
    return config


def _retention(t: _Table) -> RetentionConfig:
    d = _defaults(RetentionConfig)
    default_s = t.number("default_s", d["default_s"], 1.0, 366 * 86400.0)
    sweep_interval_s = t.number("sweep_interval_s", d["sweep_interval_s"], 0.05, 86400.0)
    per_category: dict[str, float] = {}
    for name in list(t.data):
        if name in ("default_s", "sweep_interval_s"):
            continue
        if name not in CATEGORIES:
            raise ConfigError(
                t.key(name),
                "unknown data category; allowed: default_s, sweep_interval_s, "
                + ", ".join(CATEGORIES),
            )
        per_category[name] = t.number(name, default_s, 1.0, 366 * 86400.0)
    t.done()
    return RetentionConfig(
        default_s=default_s, per_category=per_category, sweep_interval_s=sweep_interval_s
    )


def _audit(t: _Table, base: Path) -> AuditConfig:
    d = _defaults(AuditConfig)
    config = AuditConfig(
        checkpoint_every=t.integer("checkpoint_every", d["checkpoint_every"], 1, 1_000_000),
        checkpoint_interval_s=t.number(
            "checkpoint_interval_s", d["checkpoint_interval_s"], 0.05, 86400.0
        ),
        max_entries=t.integer("max_entries", d["max_entries"], 1000, 100_000_000),
        archive_dir=t.path_value("archive_dir", base),
    )
    t.done()
    return config


def _clock(t: _Table) -> ClockConfig:
    d = _defaults(ClockConfig)
    require = t.get("require_sync", str, d["require_sync"])
    if require not in ("auto", "yes", "no"):
        raise ConfigError(t.key("require_sync"), f"{require!r} is not one of auto, yes, no")
    config = ClockConfig(
        require_sync=require,
        hold_max_records=t.integer("hold_max_records", d["hold_max_records"], 0, 1_000_000),
    )
    t.done()
    return config


def _homeassistant(t: _Table) -> HomeAssistantConfig:
    d = _defaults(HomeAssistantConfig)
    prefix = t.get("discovery_prefix", str, d["discovery_prefix"])
    if not _BASE_TOPIC.match(prefix):
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


def _metrics(t: _Table, base: Path) -> MetricsConfig:
    d = _defaults(MetricsConfig)
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


def _commands(t: _Table, base: Path) -> CommandsConfig:
    texts = [(t.key("signing_keys"), text) for text in _strings(t, "signing_keys")]
    keys_file = t.path_value("signing_keys_file", base)
    if keys_file is not None:
        try:
            lines = keys_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(t.key("signing_keys_file"), f"cannot read {keys_file}") from exc
        where = t.key("signing_keys_file")
        texts += [(where, x.strip()) for x in lines if x.strip() and not x.startswith("#")]
    keys: list[bytes] = []
    for where, text in texts:
        raw = bytes.fromhex(text) if re.fullmatch(r"[0-9a-fA-F]{64}", text) else b""
        if not raw:
            raise ConfigError(where, f"{text!r} is not an Ed25519 public key (64 hex digits)")
        keys.append(raw)
    t.done()
    return CommandsConfig(signing_keys=tuple(dict.fromkeys(keys)))


def _strings(t: _Table, name: str) -> tuple[str, ...]:
    values: list[object] = t.get(name, list, [])
    for value in values:
        if not isinstance(value, str) or not value:
            raise ConfigError(t.key(name), f"{value!r} is not a non-empty string")
    return tuple(str(v) for v in values)


def _discovery(t: _Table) -> DiscoveryConfig:
    db = _defaults(BleConfig)
    dm = _defaults(MdnsConfig)
    m = t.table("mdns")
    mdns = MdnsConfig(
        enabled=m.get("enabled", bool, dm["enabled"]),
        interfaces=_strings(m, "interfaces"),
        poll_interval_s=m.number("poll_interval_s", dm["poll_interval_s"], 0.05, 86400.0),
        http_timeout_s=m.number("http_timeout_s", dm["http_timeout_s"], 0.05, 120.0),
        offline_after_s=m.number("offline_after_s", dm["offline_after_s"], 0.1, 86400.0),
    )
    m.done()
    b = t.table("ble")
    mode = b.get("scanning_mode", str, db["scanning_mode"])
    if mode not in ("passive", "active"):
        raise ConfigError(b.key("scanning_mode"), f"{mode!r} is not one of passive, active")
    ble = BleConfig(
        enabled=b.get("enabled", bool, db["enabled"]),
        adapter=b.get("adapter", str, db["adapter"]),
        scanning_mode=mode,
        watchdog_s=b.number("watchdog_s", db["watchdog_s"], 0.1, 86400.0),
        min_rssi=b.integer("min_rssi", db["min_rssi"], -127, 20),
        allow=frozenset(a.upper() for a in _strings(b, "allow")),
        deny=frozenset(a.upper() for a in _strings(b, "deny")),
        offline_after_s=b.number("offline_after_s", db["offline_after_s"], 0.1, 86400.0),
        connect_attempts=b.integer("connect_attempts", db["connect_attempts"], 1, 20),
    )
    b.done()
    t.done()
    return DiscoveryConfig(mdns=mdns, ble=ble)


def resolve_config_path(explicit: str | None) -> str:
    """Return the config path: the explicit one, else $CONSENTGATE_CONFIG, else the default."""
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
