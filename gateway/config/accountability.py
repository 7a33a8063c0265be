"""Accountability's tables: ``[audit]`` (checkpoints, size budget), ``[clock]`` (when hub
time is trusted) and ``[commands]`` (keys that sign commands)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gateway.config.table import Table, defaults
from gateway.errors import ConfigError


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


def parse_audit(t: Table, base: Path) -> AuditConfig:
    """Validate the ``[audit]`` table; the archive path is resolved against ``base``."""
    d = defaults(AuditConfig)
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


def parse_clock(t: Table) -> ClockConfig:
    """Validate the ``[clock]`` table."""
    d = defaults(ClockConfig)
    require = t.get("require_sync", str, d["require_sync"])
    if require not in ("auto", "yes", "no"):
        raise ConfigError(t.key("require_sync"), f"{require!r} is not one of auto, yes, no")
    config = ClockConfig(
        require_sync=require,
        hold_max_records=t.integer("hold_max_records", d["hold_max_records"], 0, 1_000_000),
    )
    t.done()
    return config


def parse_commands(t: Table, base: Path) -> CommandsConfig:
    """Validate the ``[commands]`` table: signing keys inline and from a file, deduplicated."""
    texts = [(t.key("signing_keys"), text) for text in t.strings("signing_keys")]
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
