"""Fixtures of the control-plane tests: a broker that queues every answer for the checker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="module")
def roomy_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private Mosquitto that queues any number of QoS 1 answers for a slow subscriber."""
    workdir: Path = tmp_path_factory.mktemp("mosquitto-control")
    mosquitto = Mosquitto(
        workdir, "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"
    ).start()
    yield mosquitto
    mosquitto.stop()
