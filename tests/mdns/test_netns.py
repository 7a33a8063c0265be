"""Across two hosts: the simulated device in its own network namespace, joined by a veth pair.

Needs root and ``ip netns`` (docs/testing.md); skipped otherwise. Link-local addresses live on the
veth pair only, and the hub's zeroconf is bound to its end of it: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import MdnsConfig
from tests.devices.helpers import wait_for

from .helpers import Hub, view

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Link:
    """A namespace and the two ends of the veth pair joining it to ours."""

    namespace: str
    hub_address: str
    device_address: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def link() -> Iterator[Link]:
    """A fresh network namespace and veth pair with link-local addresses; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns)")
    tag = secrets.token_hex(3)
    namespace, ours, theirs = f"cg-{tag}", f"cg{tag}a", f"cg{tag}b"
    octet = 1 + secrets.randbelow(250)
    hub, device = f"169.254.{octet}.1", f"169.254.{octet}.2"
    try:
        _ip("netns", "add", namespace)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"ip netns unavailable: {exc}")
    try:
        _ip("link", "add", ours, "type", "veth", "peer", "name", theirs)
        _ip("link", "set", theirs, "netns", namespace)
        _ip("addr", "add", f"{hub}/24", "dev", ours)
        _ip("link", "set", ours, "up")
        for command in (
            ("addr", "add", f"{device}/24", "dev", theirs),
            ("link", "set", theirs, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("netns", "exec", namespace, "ip", *command)
        yield Link(namespace, hub, device)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            _ip("link", "del", ours)
        _ip("netns", "del", namespace)


@pytest.fixture
def mdns_config(link: Link) -> MdnsConfig:
    """The hub listens on its end of the veth pair only."""
    return MdnsConfig(
        interfaces=(link.hub_address,), poll_interval_s=0.2, http_timeout_s=0.5, offline_after_s=2.0
    )


@dataclass(frozen=True)
class Remote:
    """A simulated device running in the other namespace."""

    process: asyncio.subprocess.Process
    device_id: str
    port: int


@pytest.fixture
async def remote(link: Link) -> AsyncIterator[Remote]:
    """Run ``python -m drivers.shelly.simulator`` inside the namespace; stop it afterwards."""
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", link.namespace, sys.executable, "-m", "drivers.shelly.simulator",
        "--host", link.device_address, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = await process.stdout.readline()
        if not line:
            assert process.stderr is not None
            pytest.fail(f"simulator did not start: {(await process.stderr.read()).decode()}")
        started = json.loads(line)
        yield Remote(process, started["id"], started["port"])
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_a_device_in_another_namespace(hub: Hub, remote: Remote) -> None:
    device = hub.registry.pseudonym(remote.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None, within=10)
    assert not view(hub, device).paired
    hub.registry.permit_join(30, "mdns")
    await wait_for(lambda: hub.registry.is_paired(device), within=10)
    await wait_for(lambda: len(hub.readings_of(device)) >= 2, within=10)
    assert hub.readings_of(device)[-1].fields["switch0_power"] == 12.5
    remote.process.terminate()  # SIGTERM: the device says goodbye and stops serving
    await remote.process.wait()
    await wait_for(lambda: not view(hub, device).online, within=hub.config.offline_after_s)
