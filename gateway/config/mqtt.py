"""``[mqtt]`` and ``[mqtt.tls]``: where and how the hub reaches its broker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.config.table import BASE_TOPIC, Table, defaults
from gateway.errors import ConfigError

# The port when [mqtt.tls] is set and no port is given (MQTT over TLS).
MQTT_TLS_PORT: Final = 8883


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


def parse_mqtt(t: Table, base: Path) -> MqttConfig:
    """Validate the ``[mqtt]`` table; relative paths are resolved against ``base``."""
    d = defaults(MqttConfig)
    base_topic = t.get("base_topic", str, d["base_topic"])
    if not BASE_TOPIC.fullmatch(base_topic):
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
