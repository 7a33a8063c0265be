"""Tables for people: how ``consentgate ctl`` prints the hub's answers.

Every function takes the JSON ``data`` of an answer and returns text; fields a hub version does
not send are shown as ``-`` (the ``clock`` and ``storage`` health fields are read tolerantly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

_MISSING = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return ``rows`` under ``headers`` as left-aligned columns separated by two spaces."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pairs(rows: Sequence[tuple[str, object]]) -> str:
    """Return ``name  value`` lines with the names aligned."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in rows)


def status(health: Mapping[str, Any], consent: Mapping[str, Any] | None) -> str:
    """Return the ``ctl status`` view: connection, outbox, devices, consent, clock, storage."""
    outbox = _mapping(health.get("outbox"))
    devices = _mapping(health.get("devices"))
    rows: list[tuple[str, object]] = [
        ("connection", _connection(health)),
        ("uptime", _duration(health.get("uptime_s"))),
        ("epoch", health.get("epoch", _MISSING)),
        (
            "outbox",
            f"{outbox.get('rows', _MISSING)} records, {_bytes(outbox.get('bytes'))}, "
            f"{outbox.get('inflight', _MISSING)} in flight",
        ),
        (
            "devices",
            f"{devices.get('online', _MISSING)} online of {devices.get('paired', _MISSING)} "
            f"paired, {devices.get('candidates', _MISSING)} candidates",
        ),
        ("clock", summary(health.get("clock"))),
        ("storage", summary(health.get("storage"))),
    ]
    if consent is not None:
        flags = _mapping(consent.get("flags"))
        rows.append(("consent", " ".join(f"{f}={s}" for f, s in flags.items()) or _MISSING))
        rows.append(("consent version", consent.get("version", _MISSING)))
        rows.append(("try now", _on_off(consent.get("try_now"))))
        rows.append(("restricted", _on_off(consent.get("restricted"))))
        overrides = _mapping(consent.get("devices"))
        if overrides:
            rows.append(("device overrides", len(overrides)))
    return pairs(rows)


def devices(data: Mapping[str, Any]) -> str:
    """Return the ``ctl devices`` view: paired devices, then candidates."""
    headers = ("id", "state", "transport", "driver", "name", "model", "online", "update")
    rows: list[list[object]] = []
    for kind in ("paired", "candidates"):
        for raw in data.get(kind) or []:
            entry = _mapping(raw)
            update = entry.get("update_version") if entry.get("update_available") else None
            rows.append(
                [
                    entry.get("id"),
                    "paired" if kind == "paired" else "candidate",
                    entry.get("transport"),
                    entry.get("driver"),
                    entry.get("name"),
                    entry.get("model"),
                    _yes_no(entry.get("online")),
                    update or ("yes" if entry.get("update_available") else "no"),
                ]
            )
    if not rows:
        return "no devices (open a pairing window with `ctl permit-join 60`)"
    return table(headers, rows)


def consent(data: Mapping[str, Any]) -> str:
    """Return the ``ctl consent get`` view: hub-wide flags, overrides, switches, version."""
    rows = [[flag, state, "hub-wide"] for flag, state in _mapping(data.get("flags")).items()]
    for device, overrides in _mapping(data.get("devices")).items():
        rows += [[flag, state, device] for flag, state in _mapping(overrides).items()]
    text = table(("flag", "state", "scope"), rows)
    return (
        f"{text}\n\ntry now: {_on_off(data.get('try_now'))}, "
        f"restricted: {_on_off(data.get('restricted'))}, version {data.get('version', _MISSING)}"
    )


def audit_tail(data: Mapping[str, Any]) -> str:
    """Return the ``ctl audit tail`` view: one line per entry, oldest first."""
    rows = []
    for raw in data.get("entries") or []:
        entry = _mapping(raw)
        details = _mapping(entry.get("details"))
        rows.append(
            [
                entry.get("seq"),
                _when(entry.get("ts")),
                entry.get("event"),
                " ".join(f"{k}={_cell(v)}" for k, v in details.items()),
            ]
        )
    return table(("seq", "time", "event", "details"), rows) if rows else "the audit log is empty"


def audit_verify(data: Mapping[str, Any]) -> str:
    """Return the ``ctl audit verify`` verdict line and its counts."""
    fault = data.get("fault")
    verdict = "intact" if data.get("intact") else f"TAMPERED: {summary(fault)}"
    return pairs(
        [
            ("audit log", verdict),
            ("entries", data.get("entries", _MISSING)),
            ("head", data.get("head", _MISSING)),
            ("checkpoints", data.get("checkpoints", _MISSING)),
            ("unsigned", data.get("unsigned", _MISSING)),
        ]
    )


def generic(data: object) -> str:
    """Return any answer as ``key  value`` lines (a scalar as itself)."""
    if isinstance(data, Mapping):
        return pairs([(str(k), v) for k, v in data.items()]) or "ok"
    return "ok" if data is None else _cell(data)


def summary(value: object) -> str:
    """Return a short one-line form of a nested value (``k=v, k=v`` for an object)."""
    if value is None:
        return _MISSING
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={summary(v)}" for k, v in value.items()) or _MISSING
    if isinstance(value, list | tuple):
        return ", ".join(summary(v) for v in value) or _MISSING
    return _cell(value)


def _connection(health: Mapping[str, Any]) -> str:
    connected = health.get("connected")
    if connected is None:
        return _MISSING
    state = "connected" if connected else "disconnected"
    return f"{state} ({health.get('connects', _MISSING)} connects since start)"


def _cell(value: object) -> str:
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list | tuple):
        return summary(value)
    return str(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _on_off(value: object) -> str:
    return _MISSING if value is None else ("on" if value else "off")


def _yes_no(value: object) -> str:
    return _MISSING if value is None else ("yes" if value else "no")


def _duration(value: object) -> str:
    if not isinstance(value, int | float):
        return _MISSING
    seconds = int(value)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _bytes(value: object) -> str:
    if not isinstance(value, int | float):
        return _MISSING
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return _MISSING


def _when(ts: object) -> str:
    if not isinstance(ts, int | float):
        return _MISSING
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
