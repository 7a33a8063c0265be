"""``consentgate backup`` and ``consentgate restore``: the hub's state in an encrypted archive."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from gateway.backup.archive import (
    BackupError,
    open_archive,
    seal_for_recipient,
    seal_with_passphrase,
)
from gateway.backup.state import collect, restore
from gateway.cli import EXIT_OK, EXIT_USAGE
from gateway.cli.daemon_cmds import load_or_exit
from gateway.envelope.keys import load_recipient_private, load_recipient_public
from gateway.errors import ConfigError
from gateway.secretfile import write_secret


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``backup`` and ``restore`` subcommands."""
    backup = subparsers.add_parser("backup", help="write the hub's state to an encrypted archive")
    backup.add_argument("--config", help="TOML file (default as for run)")
    backup.add_argument("--out", required=True, help="the archive to write (mode 0600)")
    seal = backup.add_mutually_exclusive_group()
    seal.add_argument("--passphrase-file", help="seal with the passphrase in this file (scrypt)")
    seal.add_argument("--recipient", help="seal to this X25519 public key (from keygen)")
    backup.set_defaults(func=cmd_backup)
    restore_ = subparsers.add_parser("restore", help="restore a backup into an empty state_dir")
    restore_.add_argument("--config", help="TOML file (default as for run)")
    restore_.add_argument("--in", dest="archive", required=True, help="the archive to restore")
    secret = restore_.add_mutually_exclusive_group()
    secret.add_argument("--passphrase-file", help="the passphrase the backup was sealed with")
    secret.add_argument("--identity", help="the X25519 private key it was sealed to")
    restore_.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    """Write the encrypted archive; exit 0, or 2 with the reason."""
    config = load_or_exit(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        contents = collect(config)
        if args.recipient:
            archive = seal_for_recipient(contents, load_recipient_public(Path(args.recipient)))
        else:
            archive = seal_with_passphrase(contents, _passphrase(args.passphrase_file, twice=True))
        write_secret(Path(args.out), archive)
    except (BackupError, ConfigError) as exc:
        print(f"consentgate: backup: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"consentgate: backup: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    names = ", ".join(sorted(contents.files))
    print(f"ok: hub {config.hub_id} backed up to {args.out} ({len(archive)} bytes: {names})")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore the archive into the config's empty state_dir; exit 0, or 2 with the reason."""
    config = load_or_exit(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        data = Path(args.archive).read_bytes()
    except OSError as exc:
        print(f"consentgate: restore: cannot read {args.archive}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.identity:
            contents = open_archive(data, identity=load_recipient_private(Path(args.identity)))
        else:
            contents = open_archive(data, passphrase=_passphrase(args.passphrase_file))
        names = restore(config, contents)
    except (BackupError, ConfigError) as exc:
        print(f"consentgate: restore: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"ok: hub {contents.hub_id} restored into {config.state_dir} ({', '.join(names)}); "
        "it starts a new epoch; if the storage key came from a systemd credential, install "
        "storage.key as that credential again"
    )
    return EXIT_OK


def _passphrase(path: str | None, *, twice: bool = False) -> bytes:
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise BackupError(f"cannot read the passphrase file {path}: {exc.strerror}") from exc
    elif sys.stdin.isatty():
        text = getpass.getpass("backup passphrase: ")
        if twice and getpass.getpass("again: ") != text:
            raise BackupError("the passphrases differ")
    else:
        raise BackupError("give --passphrase-file FILE (or --recipient / --identity)")
    if len(text) < 8:
        raise BackupError("the passphrase must have at least 8 characters")
    return text.encode()
