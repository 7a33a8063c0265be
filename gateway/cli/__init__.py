"""The ``consentgate`` command line: one subcommand per module, exit codes 0 / 1 / 2.

0 success, 1 a check failed (e.g. tampering found), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

EXIT_OK: Final = 0
EXIT_CHECK_FAILED: Final = 1
EXIT_USAGE: Final = 2

# Modules that contribute subcommands through ``register(subparsers)``.
_COMMAND_MODULES: Final = (
    "gateway.cli.daemon_cmds",
    "gateway.cli.envelope_cmds",
    "gateway.cli.demo",
    "gateway.cli.audit_cmds",
    "gateway.cli.doctor",
    "gateway.cli.ctl",
    "gateway.disclosure.cli",
    "gateway.backup.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="consentgate",
        description="IoT hub gateway that forwards only consented data, sealed end to end.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (sys.argv by default) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
