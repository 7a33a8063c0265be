"""``consentgate run`` and ``consentgate config check``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from gateway.config import Config, load_config, resolve_config_path
from gateway.errors import ConfigError, ConsentgateError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` and ``config`` subcommands."""
    run = subparsers.add_parser("run", help="run the hub daemon")
    run.add_argument(
        "--config",
        help="TOML file (default: $CONSENTGATE_CONFIG or /etc/consentgate/consentgate.toml)",
    )
    run.set_defaults(func=cmd_run)
    config = subparsers.add_parser("config", help="configuration tools")
    sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", nargs="?", help="TOML file (default as for run)")
    check.set_defaults(func=cmd_config_check)


def load_or_exit(path: str | None) -> Config | None:
    """Load the config at ``path`` (resolved as documented); print the error and return None."""
    try:
        return load_config(resolve_config_path(path))
    except ConfigError as exc:
        print(f"consentgate: config error: {exc}", file=sys.stderr)
        return None


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate the config file; print ``ok`` and exit 0, or the error and exit 2."""
    config = load_or_exit(args.file)
    if config is None:
        return 2
    if config.crypto.recipient_public_key is None:
        print(
            "consentgate: config error: crypto.recipient_public_key: missing; "
            "run `consentgate keygen --out DIR` on the consumer and point here",
            file=sys.stderr,
        )
        return 2
    print(f"ok: hub {config.hub_id}, topics under {config.topic_root}/")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT; exit 2 on a configuration error."""
    from gateway import daemon  # noqa: PLC0415 - keep `config check` light
    from gateway.logs import setup_logging  # noqa: PLC0415
    from gateway.timers import loop_factory  # noqa: PLC0415

    config = load_or_exit(args.config)
    if config is None:
        return 2
    setup_logging(config.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await daemon.run(config, stop)

    try:
        with asyncio.Runner(loop_factory=loop_factory(config.timer_slack_s)) as runner:
            runner.run(main())
    except ConfigError as exc:
        logger.error("configuration error", extra={"reason": str(exc)})  # noqa: TRY400
        print(f"consentgate: config error: {exc}", file=sys.stderr)
        return 2
    except ConsentgateError as exc:
        logger.error("daemon stopped on an error", extra={"reason": str(exc)})  # noqa: TRY400
        return 1
    return 0
