"""Consumer group members as real `consentgate consume` processes, and a fleet of them with a
private broker and simulated hubs, landing records in PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.fleet_hubs import SimHub, publish_rows
from gateway.envelope.keys import generate_recipient, load_recipient_private, raw_public
from gateway.envelope.live import partition_filters, subscriptions
from gateway.model import OutboxRow
from tests.support.mosquitto import Mosquitto

BASE: Final = "fleet"
RECORDS: Final = "SELECT count(*) FROM consentgate_records"
ANNOUNCEMENTS: Final = "SELECT count(*) FROM consentgate_announcements"


@dataclass
class Member:
    """One `consume` process of a group; restarted with the same client id (durable session)."""

    port: int
    base: str
    key_file: Path
    trust: dict[str, Ed25519PrivateKey]
    sink: str
    client_id: str
    log: Path
    group: str | None = "workers"
    partition: str | None = None  # "I/N": plain per-hub subscriptions instead of a group
    protocol: str = "5"
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    def argv(self) -> list[str]:
        """Return the command line of this member."""
        argv = [
            sys.executable,
            "-c",
            "import sys; from gateway.cli import main; sys.exit(main())",
            "consume",
            "--port",
            str(self.port),
            "--base",
            self.base,
            "--recipient-key",
            str(self.key_file),
            "--sink",
            self.sink,
            "--client-id",
            self.client_id,
            "--protocol",
            self.protocol,
        ]
        if self.group is not None:
            argv += ["--group", self.group]
        if self.partition is not None:
            argv += ["--partition", self.partition]
        for hub_id, key in self.trust.items():
            argv += ["--trust", f"{hub_id}={raw_public(key.public_key()).hex()}"]
        return argv

    def filters(self) -> list[str]:
        """Return the topic filters this member subscribes to, as ``consume`` computes them."""
        epochs, data = subscriptions(self.base, self.group)
        if self.partition is None:
            return [epochs, data]
        index, count = (int(n) for n in self.partition.split("/"))
        return [epochs, *partition_filters(self.base, self.trust, index, count)]

    def subscribed(self, broker_log: str) -> bool:
        """Return whether ``broker_log`` shows all this member's subscriptions added since its
        latest connection (Mosquitto logs "<time>: <client id> <qos> <filter>")."""
        connected = broker_log.rfind(f" as {self.client_id} ")
        since = broker_log[connected:]
        return connected >= 0 and all(
            f": {self.client_id} 1 {f}\n" in since for f in self.filters()
        )

    async def start(self) -> None:
        """Start the process (stdout discarded: the sink is what counts)."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=asyncio.subprocess.DEVNULL, stderr=log
            )

    async def kill9(self) -> None:
        """SIGKILL the process: nothing is flushed, nothing uncommitted was acknowledged."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    def pause(self) -> None:
        """SIGSTOP the process: it neither reads nor reconnects until ``resume``."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        """Interrupt the process and wait for it."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await self.kill9()


@dataclass
class Fleet:
    """A private Mosquitto (persistent), hubs sealing for one recipient, and the members of
    one consumer group (or of partitions, one per member) trusting them, storing into ``sink``.
    """

    mosquitto: Mosquitto
    hubs: list[SimHub]
    members: list[Member]
    sink: str

    @classmethod
    def create(
        cls, tmp_path: Path, sink: str, hubs: int, *, members: int = 2, partitioned: bool = False
    ) -> Fleet:
        """Start the broker; make ``hubs`` hubs and ``members`` members (not started yet)."""
        mosquitto = Mosquitto(
            tmp_path / "mosquitto", "allow_anonymous true\nlog_type subscribe"
        ).start()
        keys = generate_recipient(tmp_path / "keys")
        recipient = load_recipient_private(keys.private_key).public_key()
        sims = [SimHub(f"hub-{i}", BASE, recipient) for i in range(hubs)]
        trust = {h.hub_id: h.key for h in sims}
        group = [
            Member(
                mosquitto.port,
                BASE,
                keys.private_key,
                trust,
                sink,
                f"member-{i}",
                tmp_path / f"member-{i}.log",
                group=None if partitioned else "workers",
                partition=f"{i}/{members}" if partitioned else None,
            )
            for i in range(members)
        ]
        return cls(mosquitto, sims, group, sink)

    async def start(self, records: int) -> None:
        """``begin``, then publish the ``records`` per hub it sealed."""
        await publish_rows(self.mosquitto.port, await self.begin(records))

    async def begin(self, records: int) -> list[OutboxRow]:
        """Start the members and wait until each is subscribed; seal ``records`` per hub and
        publish the hubs' retained announcements; once they are stored, return the records
        (not published yet)."""
        for member in self.members:
            await member.start()
        await self.subscribed()
        sealed = [row for h in self.hubs for row in h.seal(records)]
        await publish_rows(self.mosquitto.port, [r for r in sealed if r.retain])
        await wait_rows(self.sink, ANNOUNCEMENTS, len(self.hubs))
        return [r for r in sealed if not r.retain]

    async def publish(self, records: int) -> None:
        """Seal and publish ``records`` more per hub."""
        await publish_rows(self.mosquitto.port, [row for h in self.hubs for row in h.seal(records)])

    def connections(self) -> list[int]:
        """Return how many times each member has connected so far, by the broker's log."""
        return [self.mosquitto.log().count(f" as {m.client_id} ") for m in self.members]

    async def members_back(self, before: list[int]) -> None:
        """Wait until every member connected again since ``before`` and subscribed again."""
        async with asyncio.timeout(30):
            while any(now <= then for now, then in zip(self.connections(), before, strict=True)):
                await asyncio.sleep(0.1)
        await self.subscribed()

    async def subscribed(self, timeout: float = 30.0) -> None:
        """Wait until every member, since its latest connection, holds all its subscriptions
        (the broker logs each one as it adds it: ``log_type subscribe``)."""
        async with asyncio.timeout(timeout):
            while not all(m.subscribed(self.mosquitto.log()) for m in self.members):
                await asyncio.sleep(0.1)

    async def assert_exactly_once(self) -> None:
        """Assert each hub's records are all stored, once each, with no gap in the sequence."""
        per_hub = await rows(
            self.sink,
            "SELECT hub, count(*), count(DISTINCT (kid, seq)), max(seq) "
            "FROM consentgate_records GROUP BY hub ORDER BY hub",
        )
        assert [(r[0], r[1], r[2], r[3] + 1) for r in per_hub] == [
            (h.hub_id, h.sent, h.sent, h.sent) for h in sorted(self.hubs, key=lambda h: h.hub_id)
        ]

    async def close(self) -> str:
        """Stop the members (resumed if paused) and the broker; return the members' logs."""
        for member in self.members:
            member.resume()
            await member.stop()
        self.mosquitto.stop()
        return "".join(m.log.read_text() for m in self.members if m.log.exists())


async def rows(url: str, query: str) -> list[asyncpg.Record]:
    """Return the rows of ``query`` in the database at ``url``."""
    db = await asyncpg.connect(url)
    try:
        return list(await db.fetch(query))
    finally:
        await db.close()


async def count(url: str, query: str = RECORDS) -> int:
    """Return the one count ``query`` returns (0 while no member has created the tables)."""
    try:
        return int((await rows(url, query))[0][0])
    except asyncpg.UndefinedTableError:
        return 0


async def wait_rows(
    url: str, query: str, expected: int, timeout: float = 60.0, poll: float = 0.2
) -> int:
    """Poll ``query`` (one count) every ``poll`` s until it reaches ``expected``; return it."""
    found = -1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while found < expected:
        if loop.time() > deadline:
            detail = await rows(
                url,
                "SELECT hub, epoch, count(*), min(seq), max(seq) FROM consentgate_records "
                "GROUP BY hub, epoch ORDER BY hub, epoch",
            )
            raise AssertionError(
                f"{query}: {found} rows, {expected} expected, after {timeout} s: "
                f"{[tuple(r) for r in detail]}"
            )
        found = await count(url, query)
        if found < expected:
            await asyncio.sleep(poll)
    return found
