"""Reading one TOML table: typed values with ranges, paths, sub-tables, unknown keys refused.

Every error names the key (its dotted path), the bad value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

# Portable topic segments (no "."): RabbitMQ swaps "." and "/", NATS < 2.10 refuses "." in topics.
TOPIC_WORD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BASE_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$")


class Table:
    """A TOML table being read: tracks the key path and rejects unknown keys."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """Return the dotted path of ``name`` in this table, as error messages name it."""
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        """Return the value of ``name`` (``default`` if absent); raise unless of ``kind``."""
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
        """Return the number ``name`` (``default`` if absent); raise unless in the range."""
        value = float(self.get(name, (int, float), default))
        if not minimum <= value <= maximum:
            raise ConfigError(self.key(name), f"{value!r} is out of range [{minimum}, {maximum}]")
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        """Return the integer ``name`` (``default`` if absent); raise unless in the range."""
        value: int = self.get(name, int, default)
        if not minimum <= value <= maximum:
            raise ConfigError(self.key(name), f"{value!r} is out of range [{minimum}, {maximum}]")
        return value

    def path_value(self, name: str, base: Path) -> Path | None:
        """Return the path ``name`` resolved against ``base`` (None if absent; '' refused)."""
        value: str | None = self.get(name, str)
        if value is None:
            return None
        if not value:
            raise ConfigError(self.key(name), "'' is not a path; remove the key or give a file")
        return (base / value).resolve()

    def strings(self, name: str) -> tuple[str, ...]:
        """Return the list of non-empty strings ``name`` (empty if absent)."""
        values: list[object] = self.get(name, list, [])
        for value in values:
            if not isinstance(value, str) or not value:
                raise ConfigError(self.key(name), f"{value!r} is not a non-empty string")
        return tuple(str(v) for v in values)

    def table(self, name: str) -> Table:
        """Return the sub-table ``name`` (empty if absent)."""
        value = self.get(name, dict, {})
        return Table(value, self.key(name))

    def done(self) -> None:
        """Raise on the first key of this table that no reader asked for."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            allowed = ", ".join(sorted(self.used))
            raise ConfigError(self.key(unknown[0]), f"unknown key; allowed here: {allowed}")


def defaults(cls: type[Any]) -> dict[str, Any]:
    """Return field name -> declared default of dataclass ``cls``: the single source of them."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


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
