"""``consentgate doctor``: check a state directory and say what is wrong and what to do.

Exit 0 when every check passes, 1 when one found a problem, 2 on a configuration error. Safe
beside a running daemon: nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio

from gateway.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE
from gateway.cli.audit_cmds import audit_report, describe
from gateway.cli.daemon_cmds import load_or_exit
from gateway.storage.doctor import Finding, examine


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``doctor`` subcommand."""
    doctor = subparsers.add_parser(
        "doctor", help="check the state directory: keys, space, database, consent, audit log"
    )
    doctor.add_argument("--config", help="TOML file (default: as for run)")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print every finding; exit 0 if all are ok, 1 if any is a problem."""
    config = load_or_exit(args.config)
    if config is None:
        return EXIT_USAGE
    findings = examine(config.state_dir)
    try:
        report = asyncio.run(audit_report(config.state_dir))
    except Exception as exc:  # noqa: BLE001 - the doctor reports what it cannot read
        findings.append(Finding(False, f"audit log not verified: {exc}"))
    else:
        findings.append(Finding(report.intact, describe(report).replace("\n", "; ")))
    for finding in findings:
        print(finding.line())
    return EXIT_OK if all(f.ok for f in findings) else EXIT_CHECK_FAILED
