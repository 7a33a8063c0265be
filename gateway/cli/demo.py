"""``consentgate demo``: a self-contained demo on loopback (see gateway/demo/show.py).

Only the argument parser lives here: the demo's simulators, embedded broker and consumer are
imported when the command runs, so ``consentgate run`` never loads them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    demo = subparsers.add_parser("demo", help="run a self-contained demo on loopback")
    demo.add_argument("--seconds", type=float, default=30.0, help="how long to run (default 30)")
    demo.add_argument("--devices", type=int, default=6, help="simulated devices (default 6)")
    demo.add_argument("--rate", type=float, default=1.0, help="readings/s per device")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo for ``--seconds`` and print a summary; exit 0."""
    if args.seconds <= 0 or args.devices < 1 or args.rate <= 0:
        print("consentgate demo: --seconds, --devices and --rate must be positive", file=sys.stderr)
        return 2
    from gateway.demo.show import run_demo  # noqa: PLC0415 - see the module docstring

    try:
        table = asyncio.run(run_demo(args.seconds, args.devices, args.rate, sys.stdout))
    except KeyboardInterrupt:
        return 0
    print(table.summary())
    return 0
