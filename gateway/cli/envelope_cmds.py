"""CLI commands of the envelope: keygen, identity, inspect and consume.

``register`` adds them to the ``consentgate`` parser; each handler returns the exit code
(0 success, 1 a check failed, 2 bad usage or configuration) and prints errors to stderr as one
line, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.backoff import Backoff
from gateway.config import load_config, resolve_config_path
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.errors import MalformedError
from gateway.envelope.inspect import describe
from gateway.envelope.keys import (
    generate_recipient,
    hub_signing_key,
    load_recipient_private,
    parse_hub_public,
    raw_public,
)
from gateway.envelope.pending import PendingRecords
from gateway.envelope.session import ConsumeStats, Rejection
from gateway.envelope.topics import SEGMENT, valid_base
from gateway.errors import ConfigError, ConsentgateError
from gateway.sinks.base import Sink, SinkError, json_value, open_sink

MQTT_5 = 5
PROTOCOLS = {"3.1.1": 4, "5": MQTT_5}
DEFAULT_SESSION_EXPIRY_S = 7 * 86400  # a week away before the broker drops the session
MAX_SESSION_EXPIRY_S = 0xFFFFFFFF  # MQTT 5 section 3.1.2.11.2: "never expires"
DEFAULT_SINK = "sqlite://consentgate-records.db"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the keygen, identity, inspect and consume subcommands to ``subparsers``."""
    keygen = subparsers.add_parser(
        "keygen", help="create a recipient key pair (recipient.key, recipient.pub) for a consumer"
    )
    keygen.add_argument("--out", required=True, type=Path, help="directory to write the keys to")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=cmd_keygen)

    identity = subparsers.add_parser(
        "identity", help="print the hub id and the public key consumers must trust"
    )
    identity.add_argument("--config", help="config file (default: $CONSENTGATE_CONFIG or /etc)")
    identity.set_defaults(func=cmd_identity)

    inspect = subparsers.add_parser(
        "inspect", help="describe a record or announcement without decrypting it (JSON)"
    )
    inspect.add_argument("file", help="file holding the envelope bytes, or - for stdin")
    inspect.set_defaults(func=cmd_inspect)

    consume = subparsers.add_parser(
        "consume",
        help="verify and decrypt records from a broker into a sink; one JSON line per record",
    )
    consume.add_argument("--host", default="127.0.0.1")
    consume.add_argument("--port", type=int, default=1883)
    consume.add_argument("--base", default="consentgate", help="base topic of the hubs")
    consume.add_argument("--recipient-key", required=True, type=Path, help="recipient.key")
    consume.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="HUB_ID=PUBHEX",
        help="a hub and its public key as printed by `identity` (repeatable)",
    )
    consume.add_argument("--username")
    consume.add_argument("--password-file", type=Path)
    consume.add_argument("--group", help="share the data subscription ($share/GROUP/...)")
    consume.add_argument(
        "--partition",
        metavar="I/N",
        help="take only the hubs of partition I of N (plain per-hub subscriptions, which a "
        "broker restart keeps; instead of --group on brokers that forget $share, e.g. "
        "Mosquitto 2.0)",
    )
    consume.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="5",
        help="MQTT version (3.1.1 for brokers without MQTT 5: no shared subscriptions there)",
    )
    consume.add_argument(
        "--sink",
        default=DEFAULT_SINK,
        help="where records are committed before they are acknowledged: sqlite://PATH "
        "(default %(default)s), postgresql://USER@HOST:PORT/DB, or none (stdout only)",
    )
    consume.add_argument(
        "--client-id",
        help="stable MQTT client id of this consumer's durable session (default: "
        "consentgate-consume-HOSTNAME[-GROUP]; give each member of a group on one host its own)",
    )
    consume.add_argument(
        "--session-expiry",
        type=int,
        default=DEFAULT_SESSION_EXPIRY_S,
        metavar="SECONDS",
        help="how long the broker keeps the session while the consumer is away (MQTT 5)",
    )
    consume.add_argument(
        "--ephemeral",
        action="store_true",
        help="random client id and a clean session: nothing is kept while away (a viewer)",
    )
    consume.add_argument("--count", type=int, help="stop after this many records")
    consume.add_argument("--seconds", type=float, help="stop after this many seconds")
    consume.set_defaults(func=cmd_consume)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a new recipient key pair to ``--out``; print the public key and its rkid."""
    try:
        files = generate_recipient(args.out, overwrite=args.force)
    except ConsentgateError as exc:
        return _fail(exc, EXIT_USAGE)
    public = files.public_key.read_bytes()
    print(
        json.dumps(
            {
                "private_key": str(files.private_key),
                "public_key": str(files.public_key),
                "public_key_hex": public.hex(),
                "rkid": files.rkid.hex(),
            }
        )
    )
    return EXIT_OK


def cmd_identity(args: argparse.Namespace) -> int:
    """Print the hub id and hub public key (creating the hub key on first use)."""
    try:
        config = load_config(resolve_config_path(args.config))
        public = raw_public(hub_signing_key(config.state_dir).public_key()).hex()
    except ConsentgateError as exc:
        return _fail(exc, EXIT_USAGE)
    print(
        json.dumps(
            {
                "hub_id": config.hub_id,
                "public_key": public,
                "trust": f"{config.hub_id}={public}",
            }
        )
    )
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what an envelope's bytes claim, as JSON; exit 1 if they are not an envelope."""
    try:
        payload = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        return _fail(ConfigError(args.file, f"cannot be read: {exc.strerror}"), EXIT_USAGE)
    try:
        print(json.dumps(describe(payload), indent=2))
    except MalformedError as exc:
        return _fail(exc, EXIT_FAILED)
    return EXIT_OK


def cmd_consume(args: argparse.Namespace) -> int:
    """Consume records from the broker until --count or --seconds; print them as JSON lines."""
    # aiomqtt is imported only when consuming: the other commands start faster without it.
    from aiomqtt import MqttError  # noqa: PLC0415

    from gateway.envelope.live import BrokerLostError, BrokerRefusedError  # noqa: PLC0415

    try:
        trust = _trust(args.trust)
        consumer = Consumer(load_recipient_private(args.recipient_key), trust)
        password = None
        if args.password_file is not None:
            password = _read_password(args.password_file)
        _check_consume_options(args)
        args.data_filters = _partition(args, list(trust))
        sink = None if args.sink == "none" else open_sink(args.sink)
    except ConsentgateError as exc:
        return _fail(exc, EXIT_USAGE)
    try:
        stats = asyncio.run(_consume(args, consumer, password, sink))
    except BrokerRefusedError as exc:
        print(f"consume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BrokerLostError, MqttError) as exc:
        print(f"consume: broker {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SinkError as exc:
        print(f"consume: {exc} (nothing uncommitted was acknowledged)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    _print_stats(stats)
    return EXIT_OK


async def _consume(
    args: argparse.Namespace, consumer: Consumer, password: str | None, sink: Sink | None
) -> ConsumeStats:
    from gateway.envelope.live import Broker, BrokerLostError, consume  # noqa: PLC0415

    client_id = None
    if not args.ephemeral:
        suffix = "" if args.group is None else f"-{args.group}"
        if args.partition is not None:
            suffix += "-p" + args.partition.replace("/", "of")
        client_id = args.client_id or f"consentgate-consume-{socket.gethostname()}{suffix}"
    broker = Broker(args.host, args.port, args.username, password)
    loop = asyncio.get_running_loop()
    deadline = None if args.seconds is None else loop.time() + args.seconds
    delays = Backoff(initial=0.2, cap=5.0).delays()
    async with contextlib.AsyncExitStack() as stack:
        if sink is not None:
            await stack.enter_async_context(sink)
        # records held for an epoch survive a reconnect (with a sink they are parked in it)
        pending = PendingRecords(keep_records=sink is None)
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await consume(
                    consumer,
                    broker,
                    args.base,
                    on_record=_print_record,
                    on_rejection=_print_rejection,
                    count=args.count,
                    seconds=left,
                    group=args.group,
                    data_filters=args.data_filters,
                    pending=pending,
                    protocol=PROTOCOLS[args.protocol],
                    client_id=client_id,
                    session_expiry_s=args.session_expiry,
                    sink=sink,
                )
            except BrokerLostError as exc:
                # A durable session lost nothing: what was not acknowledged is redelivered.
                if client_id is None or (deadline is not None and loop.time() >= deadline):
                    raise
                print(f"consume: {exc}; reconnecting", file=sys.stderr, flush=True)
                await asyncio.sleep(next(delays))


def record_json(record: OpenedRecord) -> str:
    """Return the JSON line printed for an opened record (``json_value`` of each value and of
    ts: strict JSON); ``"ts_estimated": true`` is added only when ts is the hub's estimate."""
    line: dict[str, object] = {
        "hub": record.hub_id,
        "device": record.device,
        "category": record.category,
        "epoch": record.epoch,
        "seq": record.seq,
        "ts": json_value(record.ts),
        "fields": {k: json_value(v) for k, v in record.fields.items()},
    }
    if record.ts_estimated:
        line["ts_estimated"] = True
    return json.dumps(line, allow_nan=False)


def _print_record(record: OpenedRecord) -> None:
    print(record_json(record), flush=True)


def _print_rejection(rejection: Rejection) -> None:
    error = rejection.error
    code = getattr(error, "code", "envelope")
    line = {"error": code, "topic": rejection.topic, "message": str(error)}
    print(json.dumps(line), file=sys.stderr, flush=True)


def _print_stats(stats: ConsumeStats) -> None:
    summary = {
        "event": "consume_done",
        "opened": stats.opened,
        "duplicates": stats.duplicates,
        "rejected": stats.rejected,
        "held": stats.held,
        "dropped": stats.dropped,
        "announcements": stats.announcements,
        "requests": stats.requests,
        "stored": stats.stored,
    }
    print(json.dumps(summary), file=sys.stderr)


def _trust(specs: list[str]) -> dict[str, Ed25519PublicKey]:
    if not specs:
        raise ConfigError("--trust", "give at least one HUB_ID=PUBHEX (from `identity`)")
    trust: dict[str, Ed25519PublicKey] = {}
    for spec in specs:
        hub_id, sep, hex_key = spec.partition("=")
        if not sep or not SEGMENT.fullmatch(hub_id):
            raise ConfigError("--trust", f"{spec!r} is not HUB_ID=PUBHEX")
        trust[hub_id] = parse_hub_public(hex_key, where=f"--trust {hub_id}")
    return trust


def _check_consume_options(args: argparse.Namespace) -> None:
    """Raise ConfigError for a base topic, group or session expiry the broker cannot take."""
    if not valid_base(args.base):
        raise ConfigError(
            "--base",
            f"{args.base!r} is not a plain topic prefix "
            "(1-4 levels of [A-Za-z0-9_-], no wildcards, no '.')",
        )
    if args.group is not None and not SEGMENT.fullmatch(args.group):
        raise ConfigError("--group", f"{args.group!r} is not 1-64 of [A-Za-z0-9_-]")
    if args.group is not None and PROTOCOLS[args.protocol] != MQTT_5:
        raise ConfigError(
            "--group",
            "shared subscriptions ($share) need MQTT 5: give --protocol 5, or on a broker "
            "without MQTT 5 split the hubs with --partition I/N",
        )
    if not 0 <= args.session_expiry <= MAX_SESSION_EXPIRY_S:
        raise ConfigError(
            "--session-expiry",
            f"{args.session_expiry} is not in 0..{MAX_SESSION_EXPIRY_S} seconds "
            "(MQTT 5 session expiry interval, a four-byte integer)",
        )


def _partition(args: argparse.Namespace, hubs: list[str]) -> list[str] | None:
    """Return the data filters of ``--partition I/N`` over the trusted hubs, or None."""
    from gateway.envelope.live import partition_filters  # noqa: PLC0415 - needs aiomqtt

    if args.partition is None:
        return None
    if args.group is not None:
        raise ConfigError("--partition", "takes the place of --group: give one of them")
    index, sep, count = args.partition.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ConfigError("--partition", f"{args.partition!r} is not I/N with 0 <= I < N")
    return partition_filters(args.base, hubs, int(index), int(count))


def _read_password(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--password-file", f"{path} cannot be read: {exc}") from exc


def _fail(exc: Exception, code: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return code
