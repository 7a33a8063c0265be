"""A broker restart with records published before the consumers are back (Mosquitto 2.0.11).

Mosquitto restores a durable session's plain subscriptions after a restart but not its shared
(``$share``) ones: records published between the restart and the members' re-subscription have
no subscriber and are dropped although the hubs got their PUBACKs. Members with ``--partition
I/N`` subscribe plainly to their own hubs, so the restored sessions queue those records: the
test pauses the members (SIGSTOP) across a SIGKILL and restart of the broker, publishes, then
resumes them, and every record is in PostgreSQL exactly once. The same scenario with
``--group`` is expected to lose records on this broker (strict xfail: it fails the day the
broker keeps shared subscriptions, so the documentation can change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.fleet_hubs import SimHub
from gateway.cli.envelope_cmds import register
from gateway.envelope.keys import generate_recipient, load_recipient_private, raw_public
from gateway.envelope.live import partition_filters
from tests.fleet.consumers import BASE, RECORDS, Fleet, wait_rows


def test_partitions_split_every_hub_to_exactly_one_member() -> None:
    hubs = [f"hub-{i}" for i in range(50)]
    parts = [partition_filters(BASE, hubs, i, 3) for i in range(3)]
    assert sorted(f for part in parts for f in part) == sorted(f"{BASE}/{h}/data/#" for h in hubs)
    assert all(parts)  # 50 hubs over 3 partitions: none empty
    with pytest.raises(ValueError, match="partition"):
        partition_filters(BASE, hubs, 3, 3)


@pytest.mark.parametrize(
    "mode",
    [
        "partition",
        pytest.param(
            "group",
            marks=pytest.mark.xfail(
                strict=True, reason="Mosquitto 2.0.11 forgets $share subscriptions at a restart"
            ),
        ),
    ],
)
async def test_records_published_while_the_members_are_not_back_are_kept(
    tmp_path: Path, postgres_url: str, mode: str
) -> None:
    fleet = Fleet.create(tmp_path, postgres_url, hubs=4, partitioned=mode == "partition")
    try:
        await fleet.start(100)
        await wait_rows(postgres_url, RECORDS, 400)

        for member in fleet.members:
            member.pause()
        fleet.mosquitto.kill9()
        before = fleet.connections()
        fleet.mosquitto.start()
        # The hubs reconnect first and publish; the members' sessions are restored, not them.
        await fleet.publish(100)
        for member in fleet.members:
            member.resume()

        await fleet.members_back(before)
        await wait_rows(postgres_url, RECORDS, 800, timeout=5.0)  # queued: delivered at once
        await fleet.assert_exactly_once()
    finally:
        logs = await fleet.close()
    assert "Traceback" not in logs


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--partition", "2/2"], "is not I/N with 0 <= I < N"),
        (["--partition", "a/b"], "is not I/N with 0 <= I < N"),
        (["--partition", "0/2", "--group", "g"], "takes the place of --group"),
    ],
)
def test_consume_refuses_a_bad_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    keys = generate_recipient(tmp_path / "keys")
    parser = argparse.ArgumentParser(prog="consentgate")
    register(parser.add_subparsers(dest="command", required=True))
    hub = SimHub("hub-1", BASE, load_recipient_private(keys.private_key).public_key())
    args = parser.parse_args(
        [
            "consume",
            "--recipient-key",
            str(keys.private_key),
            "--trust",
            f"hub-1={raw_public(hub.key.public_key()).hex()}",
            "--sink",
            "none",
            *extra,
        ]
    )
    assert args.func(args) == 2
    assert message in capsys.readouterr().err
