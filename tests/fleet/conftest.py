"""Fixtures of the fleet tests: private brokers of every kind and a database of their own."""

from __future__ import annotations

import gc
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.demo.broker import EmbeddedBroker
from tests.fleet.brokers import Nats, RabbitMQ

# The machine's PostgreSQL (trust auth). Inside the tests' private network namespace its TCP
# port on the host's loopback is out of reach, its Unix socket is not.
POSTGRES_SERVERS = (
    os.environ.get("CONSENTGATE_TEST_POSTGRES", "host=/var/run/postgresql"),
    "host=127.0.0.1 port=5432",
)


def _url(server: str, database: str) -> str:
    params = dict(part.split("=", 1) for part in server.split())
    host = params.pop("host")
    port = params.get("port", "5432")
    if host.startswith("/"):
        return f"postgresql://postgres@/{database}?host={host}&port={port}"
    return f"postgresql://postgres@{host}:{port}/{database}"


async def _admin() -> tuple[asyncpg.Connection, str]:
    errors = []
    for server in POSTGRES_SERVERS:
        try:
            return await asyncpg.connect(_url(server, "postgres"), timeout=5), server
        except (OSError, asyncpg.PostgresError) as exc:
            errors.append(f"{server}: {exc}")
    pytest.fail(f"no PostgreSQL reachable: {errors}")


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    """A private RabbitMQ node with rabbitmq_mqtt (about 10 s to start: shared by the session)."""
    with tempfile.TemporaryDirectory(prefix="cg-rabbit-") as workdir:
        node = RabbitMQ(Path(workdir)).start()
        yield node
        node.stop()


@pytest.fixture(scope="session")
def nats() -> Iterator[Nats]:
    """A private nats-server with its MQTT listener and JetStream."""
    with tempfile.TemporaryDirectory(prefix="cg-nats-") as workdir:
        server = Nats(Path(workdir)).start()
        yield server
        server.stop()


@pytest.fixture
async def amqtt_broker() -> AsyncIterator[EmbeddedBroker]:
    """amqtt in this process (MQTT 3.1.1)."""
    broker = await EmbeddedBroker().start()
    yield broker
    await broker.stop()
    # amqtt's shutdown leaves the server side of its last connections to the garbage
    # collector: collected here, not during a later test (where the unclosed transport's
    # warning would fail that test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    name = f"cg_test_{uuid.uuid4().hex[:10]}"
    admin, server = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _url(server, name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sink_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty sink of each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'records.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
