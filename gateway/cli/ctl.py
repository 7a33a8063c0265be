"""``consentgate ctl``: the hub's request/response API as a command line for operators.

Each subcommand sends one or two requests (see ``gateway.cli.ctl_client``) and prints a table,
or the answer's JSON with ``--json``. Exit codes: 0 ok; 2 bad usage or configuration; 3 no
answer in time or no broker; on an error answer, one code per API error (``ERROR_EXITS``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli import EXIT_OK, EXIT_USAGE
from gateway.cli import ctl_tables as tables
from gateway.cli.ctl_client import Answer, HubClient, NoAnswerError, Target, connect
from gateway.config import load_config, resolve_config_path
from gateway.errors import ConfigError

EXIT_NO_ANSWER: Final = 3
ERROR_EXITS: Final = {
    "invalid_json": 10,
    "invalid_request": 11,
    "unknown_command": 12,
    "unknown_flag": 13,
    "not_found": 14,
    "unauthorized": 15,
    "busy": 16,
    "internal": 17,
    "storage_unavailable": 18,
}
EXIT_OTHER_ERROR: Final = 19
_ON_OFF: Final = ("on", "off")


class _UsageError(Exception):
    """The command line or the configuration cannot be used; the message says why."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ctl`` and its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common)
    ctl = subparsers.add_parser("ctl", help="control a running hub over MQTT", parents=[common])
    sub = ctl.add_subparsers(dest="ctl_command", required=True, metavar="ACTION")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common])

    add("status", "connection, outbox, devices, consent, clock and storage")
    add("devices", "paired devices and candidates")
    join = add("permit-join", "open (or with 0 close) the pairing window")
    join.add_argument("duration", type=float, help="seconds")
    join.add_argument("--transport", choices=("mdns", "ble"))
    pair = add("pair", "pair a candidate")
    pair.add_argument("device")
    pair.add_argument("--setup-code", help="the device's setup code, if it has one")
    add("unpair", "unpair a device and erase its data").add_argument("device")
    consent = add("consent", "show or change consent")
    consent.add_argument("action", nargs="?", choices=("get", "set"), default="get")
    consent.add_argument("flag", nargs="?")
    consent.add_argument("state", nargs="?", choices=("on", "off", "coarse"))
    consent.add_argument("--device", help="change one device's override only")
    add("try-now", "Try Now mode: collect nothing but device.basic").add_argument(
        "state", choices=_ON_OFF
    )
    add("restrict", "stop collecting anything personal").add_argument("state", choices=_ON_OFF)
    erase = add("erase", "erase a device's data, or everything")
    which = erase.add_mutually_exclusive_group(required=True)
    which.add_argument("--device")
    which.add_argument("--all", action="store_true")
    audit = add("audit", "the hub's audit log")
    audit.add_argument("action", choices=("tail", "verify"))
    audit.add_argument("-n", type=int, default=20, help="entries for tail (default 20)")
    health = add("health", "the health report (--watch: a live view)")
    health.add_argument("--watch", action="store_true")
    health.add_argument("--updates", type=int, default=0, help="with --watch: stop after N")
    disclose = add("disclose", "what the hub collects and forwards now, in words")
    disclose.add_argument("--format", choices=("text", "markdown", "html"), default="text")
    ctl.set_defaults(func=cmd_ctl)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    default = argparse.SUPPRESS  # a subcommand's copy must not reset the value given earlier
    parser.add_argument("--config", default=default, help="the hub's TOML file (broker, hub id)")
    parser.add_argument("--host", default=default, help="broker host (default from --config)")
    parser.add_argument("--port", type=int, default=default, help="broker port")
    parser.add_argument("--base", default=default, help="base topic (default consentgate)")
    parser.add_argument("--hub", default=default, help="hub id (default from --config)")
    parser.add_argument("--username", default=default, help="broker user name")
    parser.add_argument("--password-file", default=default, help="file holding the password")
    parser.add_argument("--ca", default=default, help="CA file: connect with TLS")
    parser.add_argument("--protocol", type=int, choices=(4, 5), default=default)
    parser.add_argument("--timeout", type=float, default=default, help="seconds (default 10)")
    parser.add_argument("--json", action="store_true", default=default, help="print JSON")
    parser.add_argument(
        "--sign-key", default=default, help="Ed25519 private key file: sign signed commands"
    )


def cmd_ctl(args: argparse.Namespace) -> int:
    """Run one ``ctl`` subcommand; return its exit code."""
    try:
        target = resolve_target(args)
        key = _sign_key(getattr(args, "sign_key", None))
    except (_UsageError, ConfigError) as exc:
        print(f"consentgate ctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeout = float(getattr(args, "timeout", 10.0))
    try:
        return asyncio.run(_run(args, target, key, timeout))
    except NoAnswerError as exc:
        print(f"consentgate ctl: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except _UsageError as exc:
        print(f"consentgate ctl: {exc}", file=sys.stderr)
        return EXIT_USAGE


def resolve_target(args: argparse.Namespace) -> Target:
    """Return the broker and hub from ``--config`` (or the default file if present) and flags."""
    explicit = getattr(args, "config", None)
    path = resolve_config_path(explicit)
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 1883, "protocol": 5}
    base, hub = "consentgate", None
    if explicit or Path(path).is_file():
        config = load_config(path)
        mqtt = config.mqtt
        base, hub = mqtt.base_topic, config.hub_id
        values.update(host=mqtt.host, port=mqtt.port, protocol=mqtt.protocol)
        values["username"] = mqtt.username
        if mqtt.password_file is not None:
            values["password"] = _read_text(mqtt.password_file)
        if mqtt.tls is not None:
            values.update(ca=mqtt.tls.ca, cert=mqtt.tls.cert, key=mqtt.tls.key)
    base = getattr(args, "base", base)
    hub = getattr(args, "hub", hub)
    if hub is None:
        raise _UsageError("which hub? give --config FILE or --hub ID (and --host, --port)")
    values.update(base=base, hub=hub)
    for name in ("host", "port", "protocol", "username"):
        if hasattr(args, name):
            values[name] = getattr(args, name)
    if hasattr(args, "password_file"):
        values["password"] = _read_text(Path(args.password_file))
    if hasattr(args, "ca"):
        values["ca"] = Path(args.ca)
    for name, what in (("ca", "CA"), ("cert", "client certificate"), ("key", "client key")):
        if values.get(name) is not None:
            _check_readable(values[name], what)
    return Target(**values)


def _check_readable(path: Path, what: str) -> None:
    """Raise a usage error naming ``path`` unless it is a file this user can read."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise _UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _sign_key(path: str | None) -> Ed25519PrivateKey | None:
    if path is None:
        return None
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    if len(raw) != 32:
        try:
            raw = bytes.fromhex(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raw = b""
    if len(raw) != 32:
        raise _UsageError(f"{path} is not an Ed25519 private key (32 bytes or 64 hex digits)")
    return Ed25519PrivateKey.from_private_bytes(raw)


async def _run(
    args: argparse.Namespace, target: Target, key: Ed25519PrivateKey | None, wait_s: float
) -> int:
    as_json = bool(getattr(args, "json", False))
    async with connect(target, wait_s) as client:

        async def ask(command: str, params: dict[str, Any] | None = None) -> Answer:
            return await client.request(command, params, wait_s=wait_s, sign_key=key)

        name = args.ctl_command
        if name == "status":
            health = await ask("health")
            if not health.ok:
                return _failed("health", health, as_json)
            consent = await ask("consent/get")
            data = {"health": health.data, "consent": consent.data if consent.ok else None}
            return _show(data, as_json, lambda d: tables.status(d["health"], d["consent"]))
        if name == "health" and args.watch:
            return await _watch(client, target, wait_s, args.updates, as_json)
        if name == "disclose":
            return await _disclose(ask, args.format, as_json)
        command, params, view = _request(args)
        answer = await ask(command, params)
        if not answer.ok:
            return _failed(command, answer, as_json)
        return _show(answer.data, as_json, view)


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any], Callable[[Any], str]]:
    """Return (command, params, view) for the one-request subcommands."""
    build = _REQUESTS.get(args.ctl_command)
    if build is None:
        raise _UsageError(f"unknown action {args.ctl_command!r}")
    return build(args)


_Built = tuple[str, dict[str, Any], Callable[[Any], str]]


def _permit_join(args: argparse.Namespace) -> _Built:
    params: dict[str, Any] = {"duration": args.duration}
    if args.transport:
        params["transport"] = args.transport
    return "permit_join", params, tables.generic


def _pair(args: argparse.Namespace) -> _Built:
    params: dict[str, Any] = {"device": args.device}
    if args.setup_code:
        params["setup_code"] = args.setup_code
    return "pair", params, tables.generic


def _consent(args: argparse.Namespace) -> _Built:
    if args.action == "get":
        if args.flag or args.state or args.device:
            raise _UsageError("`consent get` takes no flag; use `consent set FLAG STATE`")
        return "consent/get", {}, tables.consent
    if not args.flag or not args.state:
        raise _UsageError("usage: ctl consent set FLAG on|off|coarse [--device ID]")
    params = {"flag": args.flag, "state": args.state}
    if args.device:
        params["device"] = args.device
    return "consent/set", params, tables.generic


def _erase(args: argparse.Namespace) -> _Built:
    scope = {"scope": "all"} if args.all else {"scope": "device", "device": args.device}
    return "erase", scope, tables.generic


def _audit(args: argparse.Namespace) -> _Built:
    if args.action == "tail":
        return "audit/tail", {"count": args.n}, tables.audit_tail
    return "audit/verify", {}, tables.audit_verify


_REQUESTS: Final[dict[str, Callable[[argparse.Namespace], _Built]]] = {
    "devices": lambda _: ("devices", {}, tables.devices),
    "health": lambda _: ("health", {}, lambda d: tables.status(d, None)),
    "permit-join": _permit_join,
    "pair": _pair,
    "unpair": lambda a: ("unpair", {"device": a.device}, tables.generic),
    "consent": _consent,
    "try-now": lambda a: ("try_now", {"enabled": a.state == "on"}, tables.generic),
    "restrict": lambda a: ("restrict", {"enabled": a.state == "on"}, tables.generic),
    "erase": _erase,
    "audit": _audit,
}


async def _watch(
    client: HubClient, target: Target, wait_s: float, updates: int, as_json: bool
) -> int:
    seen = 0
    health_topic = f"{target.root}/health"
    live = sys.stdout.isatty() and not as_json
    async for topic, payload in client.watch([health_topic], wait_s=max(wait_s, 60.0)):
        if topic != health_topic:
            continue
        try:
            health = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if as_json:
            print(json.dumps(health, separators=(",", ":")), flush=True)
        else:
            prefix = "\x1b[H\x1b[2J" if live else ""
            print(f"{prefix}{tables.status(health, None)}\n", flush=True)
        seen += 1
        if updates and seen >= updates:
            break
    return EXIT_OK


async def _disclose(ask: Callable[[str], Any], fmt: str, as_json: bool) -> int:
    from gateway.disclosure.model import DisclosureInputs  # noqa: PLC0415 - only here
    from gateway.disclosure.render import render  # noqa: PLC0415

    answer: Answer = await ask("disclosure")
    if not answer.ok:
        return _failed("disclosure", answer, as_json)
    if as_json:
        print(json.dumps(answer.data, indent=2))
        return EXIT_OK
    print(render(DisclosureInputs.from_json(answer.data), fmt))
    return EXIT_OK


def _show(data: Any, as_json: bool, view: Callable[[Any], str]) -> int:
    print(json.dumps(data, indent=2) if as_json else view(data))
    return EXIT_OK


def _failed(command: str, answer: Answer, as_json: bool) -> int:
    if as_json:
        print(json.dumps(answer.body, indent=2))
    print(f"consentgate ctl: {command}: {answer.code}: {answer.message}", file=sys.stderr)
    return ERROR_EXITS.get(answer.code, EXIT_OTHER_ERROR)
