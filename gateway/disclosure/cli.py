"""``consentgate disclosure``: the disclosure read from the state directory (no MQTT needed).

Opens the database read-only beside a running daemon (WAL readers do not block its writer);
it must run as the daemon's user, since device names are sealed with the storage key.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.cli import EXIT_OK, EXIT_USAGE
from gateway.cli.daemon_cmds import load_or_exit
from gateway.config import Config
from gateway.consent.store import load_policy
from gateway.devices.store import DeviceStore
from gateway.disclosure.facts import PairedDevice, inputs_from
from gateway.disclosure.model import CONSENT_EVENTS, ConsentEvent, DisclosureInputs
from gateway.disclosure.render import FORMATS, render
from gateway.errors import ConsentgateError
from gateway.pseudonym import Pseudonymizer
from gateway.secure.atrest import StorageCipher, load_storage_key
from gateway.storage.db import DB_FILE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``disclosure`` subcommand."""
    parser = subparsers.add_parser(
        "disclosure", help="what the hub collects and forwards now, in words (from state_dir)"
    )
    parser.add_argument("--config", help="TOML file (default as for run)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.set_defaults(func=cmd_disclosure)


def cmd_disclosure(args: argparse.Namespace) -> int:
    """Print the disclosure of the hub configured in ``--config``; exit 2 if it cannot be read."""
    config = load_or_exit(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        inputs = asyncio.run(read_state(config))
    except (ConsentgateError, sqlite3.Error) as exc:
        print(f"consentgate: cannot read the hub's state: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(render(inputs, args.format))
    return EXIT_OK


async def read_state(config: Config) -> DisclosureInputs:
    """Return the disclosure facts of ``config``'s hub from its state directory."""
    path = config.state_dir / DB_FILE
    if not path.is_file():
        raise ConsentgateError(f"no database at {path}; has the daemon run with this config?")
    db = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        policy = await load_policy(db)
        store = DeviceStore(db, StorageCipher(load_storage_key(config.state_dir)))
        devices = await _paired(store)
        history = [
            ConsentEvent(e.seq, e.ts, e.event, e.details)
            async for e in AuditLog(db).events(tuple(CONSENT_EVENTS))
        ]
    finally:
        await db.close()
    if config.simulator.devices:
        from drivers.simulator import device_ids  # noqa: PLC0415 - the drivers load on demand

        names = Pseudonymizer.from_state_dir(config.state_dir)
        simulated = sorted(device_ids(names.device, config.simulator.devices))
        devices = [PairedDevice(d, None, "simulator", "simulator") for d in simulated] + devices
    return inputs_from(config, policy.snapshot(), devices, history, time.time())


async def _paired(store: DeviceStore) -> list[PairedDevice]:
    try:
        rows = await store.load()
    except ConsentgateError as exc:
        if "no such table" in str(exc):  # a hub that never paired a device
            return []
        raise
    return [PairedDevice(d.id, d.name, d.driver, d.transport) for d in rows]
