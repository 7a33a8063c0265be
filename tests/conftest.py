"""Fixtures shared by every test: real brokers on loopback, the daemon's logs in a buffer."""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.logs import setup_logging
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


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Route every log record through the daemon's JSON formatter at DEBUG into a buffer (as
    the daemon logs at DEBUG); the logging setup is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.Formatter.converter)
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    stream = io.StringIO()
    setup_logging("DEBUG", stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level, logging.Formatter.converter = saved
        for name in logging.root.manager.loggerDict:
            logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))
