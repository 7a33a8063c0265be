"""The data path's tables: ``[crypto]`` (sealing), ``[outbox]`` (keeping records until
acknowledged), ``[consent]`` (coarse forms) and ``[retention]`` (when records expire)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.config.table import Table, defaults
from gateway.consent.catalogue import CATEGORIES
from gateway.errors import ConfigError

OVERFLOW_POLICIES: Final = ("drop_oldest", "reject_new")


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
    # A reading that finds fewer than a batch queued waits up to this long for others: at
    # everyday load one batch, one seal and one publish burst per interval instead of many
    # (CPU per record), for up to this much more latency before a record is sent.
    linger_s: float = 0.5
    # Sealed records reach SQLite in group commits at most this often; a record the broker
    # acknowledged before its group commit is never written (SD-card wear). A power cut may
    # lose the records of the last interval that the broker had not acknowledged yet.
    commit_interval_s: float = 1.0
    # While storage is faulty, at most this many records wait in memory; more are refused.
    memory_rows: int = 20_000


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


def parse_crypto(t: Table, base: Path) -> CryptoConfig:
    """Validate the ``[crypto]`` table; the key path is resolved against ``base``."""
    d = defaults(CryptoConfig)
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


def parse_outbox(t: Table) -> OutboxConfig:
    """Validate the ``[outbox]`` table."""
    d = defaults(OutboxConfig)
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
        linger_s=t.number("linger_s", d["linger_s"], 0.0, 5.0),
        commit_interval_s=t.number("commit_interval_s", d["commit_interval_s"], 0.0, 60.0),
        memory_rows=t.integer("memory_rows", d["memory_rows"], 100, 1_000_000),
    )
    t.done()
    return config


def parse_consent(t: Table) -> ConsentConfig:
    """Validate the ``[consent]`` table."""
    d = defaults(ConsentConfig)
    config = ConsentConfig(
        aggregate_window_s=t.number("aggregate_window_s", d["aggregate_window_s"], 1.0, 86400.0),
    )
    t.done()
    return config


def parse_retention(t: Table) -> RetentionConfig:
    """Validate the ``[retention]`` table: the defaults and a TTL per known data category."""
    d = defaults(RetentionConfig)
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
