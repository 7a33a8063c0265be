"""Consumer group members as real `consentgate consume` processes."""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.envelope.keys import raw_public


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
