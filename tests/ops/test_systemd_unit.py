"""The shipped systemd unit: the required directives, ordering after time-sync.target, the
kernel's clock status readable, a clean `systemd-analyze verify`, and an exposure of at most
2.0 by `systemd-analyze security --offline=true`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "consentgate.service"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "consentgate"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ("SupplementaryGroups", "bluetooth"),
        ("MemorySwapMax", "0"),
        ("LimitCORE", "0"),
        ("NoNewPrivileges", "yes"),
    ],
)
def test_required_directives(key: str, value: str) -> None:
    assert directives().get(key) == [value]


def test_watchdog_and_credentials_are_set() -> None:
    found = directives()
    assert re.fullmatch(r"\d+s", found["WatchdogSec"][0])
    assert any(v.startswith("consentgate-storage.key:") for v in found["LoadCredential"])


def test_the_unit_waits_for_time_sync_without_requiring_it() -> None:
    found = directives()
    assert "time-sync.target" in found["Wants"][0].split()
    assert "time-sync.target" in found["After"][0].split()
    assert not any("time-sync.target" in v for v in found.get("Requires", []))


def test_the_kernel_sync_status_stays_readable_and_the_clock_unsettable() -> None:
    found = directives()
    assert "ProtectClock" not in found  # its filter refuses reading adjtimex(2) too
    filters = found["SystemCallFilter"]
    # a later allow list re-adds what an earlier deny list removed
    assert filters.index("adjtimex clock_adjtime") > filters.index("~@privileged @resources")
    assert found["CapabilityBoundingSet"] == [""]  # no CAP_SYS_TIME: reading only


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "consentgate.service"
    # the installed binary is not on this machine: verify everything else
    text = re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/true", UNIT.read_text())
    unit.write_text(text)
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr, result.stderr


@needs_analyze
def test_exposure_is_at_most_two() -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
