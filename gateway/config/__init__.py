"""The TOML configuration, validated once at start-up into frozen objects.

Every error names the key, the bad value and what is allowed. Secrets are never in the TOML:
only paths to files holding them (or names of systemd credentials). Each section's dataclass
and its validation live together, in the module of its part of the hub; the dataclass field
defaults are the only defaults:

- ``table``: reading one TOML table (types, ranges, paths, unknown keys), shared rules;
- ``mqtt``: ``[mqtt]``, ``[mqtt.tls]``;
- ``records``: ``[crypto]``, ``[outbox]``, ``[consent]``, ``[retention]``;
- ``accountability``: ``[audit]``, ``[clock]``, ``[commands]``;
- ``devices``: ``[discovery]`` (``mdns``, ``ble``), ``[simulator]``;
- ``operations``: ``[homeassistant]``, ``[metrics]``;
- ``loader``: ``Config``, the top-level keys, the file, the config path.

Everything is importable from ``gateway.config`` itself.
"""

from gateway.config.accountability import AuditConfig, ClockConfig, CommandsConfig
from gateway.config.devices import BleConfig, DiscoveryConfig, MdnsConfig, SimulatorConfig
from gateway.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    load_config,
    parse_config,
    resolve_config_path,
)
from gateway.config.mqtt import MQTT_TLS_PORT, MqttConfig, TlsConfig
from gateway.config.operations import HomeAssistantConfig, MetricsConfig
from gateway.config.records import (
    OVERFLOW_POLICIES,
    ConsentConfig,
    CryptoConfig,
    OutboxConfig,
    RetentionConfig,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "MQTT_TLS_PORT",
    "OVERFLOW_POLICIES",
    "AuditConfig",
    "BleConfig",
    "ClockConfig",
    "CommandsConfig",
    "Config",
    "ConsentConfig",
    "CryptoConfig",
    "DiscoveryConfig",
    "HomeAssistantConfig",
    "MdnsConfig",
    "MetricsConfig",
    "MqttConfig",
    "OutboxConfig",
    "RetentionConfig",
    "SimulatorConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
    "resolve_config_path",
]
