"""Fixtures for storage tests: a file system that loses unsynced data and a small disk (the
request client for the hub's MQTT API is tests/support/mqtt_requests.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _needs_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (CI runs as root)")


@pytest.fixture
def lazy_mount(tmp_path: Path) -> Iterator[Path]:
    """Mount tests.support.lazyfs at tmp_path/mnt over tmp_path/backing; yield the mount."""
    _needs_root("a FUSE mount")
    if shutil.which("fusermount3") is None:
        pytest.fail("fusermount3 is missing: ./dev installs fuse3")
    backing, mount = tmp_path / "backing", tmp_path / "mnt"
    backing.mkdir()
    mount.mkdir()
    log = (tmp_path / "lazyfs.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.lazyfs", str(backing), str(mount)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,  # where the module is found, whatever the test process's directory is
    )
    deadline = time.monotonic() + 10
    while not os.path.ismount(mount):
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail("lazyfs did not mount: " + (tmp_path / "lazyfs.log").read_text())
        time.sleep(0.05)
    try:
        yield mount
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def power_cut(mount: Path, image: Path) -> Path:
    """Take the image a power cut at this instant leaves of ``mount``; return it."""
    (mount / ".power-cut").write_text(str(image))
    return image


def inject_fault(mount: Path, reason: str) -> None:
    """Make the lazy file system fail data writes with ``full``, ``eio`` or ``read_only``
    (``none`` ends it)."""
    (mount / ".fault").write_text(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Mount a 6 MB tmpfs at tmp_path/disk (a small SD card) and yield it."""
    _needs_root("a tmpfs mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(disk)], check=True
    )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; return it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (64 * 1024, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, bytes(size))
    finally:
        os.close(fd)
    return filler
