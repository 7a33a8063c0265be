"""The devices' tables: ``[discovery.mdns]``, ``[discovery.ble]`` and ``[simulator]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.table import Table, defaults
from gateway.errors import ConfigError


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


def parse_simulator(t: Table) -> SimulatorConfig:
    """Validate the ``[simulator]`` table."""
    d = defaults(SimulatorConfig)
    config = SimulatorConfig(
        devices=t.integer("devices", d["devices"], 0, 100_000),
        rate_hz=t.number("rate_hz", d["rate_hz"], 0.001, 1000.0),
        ble_devices=t.integer("ble_devices", d["ble_devices"], 0, 10_000),
    )
    t.done()
    return config


def parse_discovery(t: Table) -> DiscoveryConfig:
    """Validate the ``[discovery]`` table and its ``mdns`` and ``ble`` sub-tables."""
    db = defaults(BleConfig)
    dm = defaults(MdnsConfig)
    m = t.table("mdns")
    mdns = MdnsConfig(
        enabled=m.get("enabled", bool, dm["enabled"]),
        interfaces=m.strings("interfaces"),
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
        allow=frozenset(a.upper() for a in b.strings("allow")),
        deny=frozenset(a.upper() for a in b.strings("deny")),
        offline_after_s=b.number("offline_after_s", db["offline_after_s"], 0.1, 86400.0),
        connect_attempts=b.integer("connect_attempts", db["connect_attempts"], 1, 20),
    )
    b.done()
    t.done()
    return DiscoveryConfig(mdns=mdns, ble=ble)
