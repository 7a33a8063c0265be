"""`consume` refuses options the broker cannot take, before it connects, in one line.

A base topic that is not a plain portable prefix (a wildcard, a dot), a session expiry outside
MQTT 5's four bytes, and a consumer group over MQTT 3.1.1 (shared subscriptions are MQTT 5)
exit 2 with the option named and no traceback; the extremes of the expiry are accepted. A port
nothing listens on is reported as unreachable, without a hint about the MQTT version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli.envelope_cmds import register
from gateway.envelope.keys import generate_recipient, raw_public
from tests.support.mosquitto import Mosquitto, free_port


def _consume(tmp_path: Path, port: int, *extra: str) -> int:
    keys = generate_recipient(tmp_path / "keys", overwrite=True)
    hub = raw_public(Ed25519PrivateKey.generate().public_key()).hex()
    parser = argparse.ArgumentParser(prog="consentgate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "consume",
            "--port",
            str(port),
            "--recipient-key",
            str(keys.private_key),
            "--trust",
            f"hub-1={hub}",
            "--sink",
            "none",
            *extra,
        ]
    )
    code: int = args.func(args)
    return code


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base", "a/#"], "--base: 'a/#' is not a plain topic prefix"),
        (["--base", "a/+/b"], "--base: 'a/+/b' is not a plain topic prefix"),
        (["--base", "fleet.eu"], "--base: 'fleet.eu' is not a plain topic prefix"),
        (["--base", "a/b/c/d/e"], "is not a plain topic prefix (1-4 levels"),
        (["--session-expiry", "-1"], "--session-expiry: -1 is not in 0..4294967295"),
        (
            ["--session-expiry", "4294967296"],
            "--session-expiry: 4294967296 is not in 0..4294967295",
        ),
        (["--group", "g", "--protocol", "3.1.1"], "shared subscriptions ($share) need MQTT 5"),
        (["--group", "a.b"], "--group: 'a.b' is not 1-64 of [A-Za-z0-9_-]"),
    ],
)
def test_consume_refuses_options_the_broker_cannot_take(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert _consume(tmp_path, free_port(), *extra) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("expiry", ["0", "4294967295"])
def test_consume_takes_the_extremes_of_the_session_expiry(
    own_broker: Mosquitto, tmp_path: Path, expiry: str
) -> None:
    durable = ["--client-id", "expiry-test", "--session-expiry", expiry]
    assert _consume(tmp_path, own_broker.port, *durable, "--seconds", "0.2") == 0
    assert "as expiry-test (p5, c0" in own_broker.log()  # durable: clean start off


def test_a_port_nothing_listens_on_is_unreachable_whatever_the_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _consume(tmp_path, free_port(), "--seconds", "5") == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err
    assert "--protocol" not in err
