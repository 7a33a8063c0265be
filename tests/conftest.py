"""Fixtures shared by every test: real brokers on loopback, hub configurations."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    """A private Mosquitto shared by the session (tests use distinct hub ids)."""
    with tempfile.TemporaryDirectory(prefix="cg-mosq-") as workdir:
        mosquitto = Mosquitto(Path(workdir), "allow_anonymous true").start()
        yield mosquitto
        mosquitto.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto for one test, which may kill and restart it."""
    mosquitto = Mosquitto(tmp_path / "mosquitto", "allow_anonymous true").start()
    yield mosquitto
    mosquitto.stop()
