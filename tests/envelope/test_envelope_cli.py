"""The envelope CLI commands: keygen, identity, inspect, consume argument errors; exit codes."""

from __future__ import annotations

import argparse
import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.envelope_cmds import register
from gateway.envelope.keys import generate_recipient

from .envelope_helpers import HUB_ID, World, seal, split


def run(argv: list[str]) -> int:
    """Parse ``argv`` with only the envelope commands registered and run the handler."""
    parser = argparse.ArgumentParser(prog="consentgate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_keygen_writes_keys_and_prints_the_rkid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keygen", "--out", str(tmp_path / "k")]) == 0
    printed = json.loads(capsys.readouterr().out)
    private = tmp_path / "k" / "recipient.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert printed["public_key_hex"] == (tmp_path / "k" / "recipient.pub").read_bytes().hex()
    assert len(bytes.fromhex(printed["rkid"])) == 8
    assert run(["keygen", "--out", str(tmp_path / "k")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert run(["keygen", "--out", str(tmp_path / "k"), "--force"]) == 0


def test_identity_prints_the_trust_line_and_keeps_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "consentgate.toml"
    config.write_text(f'hub_id = "{HUB_ID}"\nstate_dir = "state"\n')
    assert run(["identity", "--config", str(config)]) == 0
    first = json.loads(capsys.readouterr().out)
    key_file = tmp_path / "state" / "hub.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first["hub_id"] == HUB_ID
    assert first["trust"] == f"{HUB_ID}={first['public_key']}"
    assert key_file.read_bytes().hex() not in json.dumps(first)
    assert run(["identity", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == first


def test_identity_with_a_bad_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["identity", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "Traceback" not in err


def test_inspect_describes_records_and_announcements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World()
    announcements, records = split(seal(world.sealer(), 1))
    (tmp_path / "rec").write_bytes(records[0].payload)
    (tmp_path / "ann").write_bytes(announcements[0].payload)
    assert run(["inspect", str(tmp_path / "rec")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["kind"], record["device"], record["category"], record["seq"]) == (
        "record",
        records[0].device,
        records[0].category,
        0,
    )
    assert run(["inspect", str(tmp_path / "ann")]) == 0
    announcement = json.loads(capsys.readouterr().out)
    assert (announcement["kind"], announcement["hub_id"], announcement["epoch"]) == (
        "announcement",
        HUB_ID,
        1,
    )
    assert announcement["kid"] == record["kid"]
    assert announcement["verified"] is False


def test_inspect_reads_stdin_and_fails_on_garbage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World()
    _, records = split(seal(world.sealer(), 1))
    stdin = io.TextIOWrapper(io.BytesIO(records[0].payload))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert run(["inspect", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "record"
    (tmp_path / "bad").write_bytes(b"\xa1\x01\x02")
    assert run(["inspect", str(tmp_path / "bad")]) == 1
    assert run(["inspect", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("trust", ["hub-1", "hub-1=abcd", "bad/hub=" + "00" * 32])
def test_consume_refuses_bad_trust_before_connecting(
    trust: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = generate_recipient(tmp_path)
    argv = ["consume", "--port", "1", "--recipient-key", str(keys.private_key)]
    assert run([*argv, "--trust", trust]) == 2
    assert "--trust" in capsys.readouterr().err


def test_consume_needs_a_readable_recipient_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["consume", "--port", "1", "--recipient-key", str(tmp_path / "none.key")]
    assert run([*argv, "--trust", f"{HUB_ID}={'00' * 32}"]) == 2
    assert "none.key" in capsys.readouterr().err


def test_consume_reports_an_unreachable_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = generate_recipient(tmp_path)
    hub = World().hub_key.public_key().public_bytes_raw().hex()
    argv = ["consume", "--port", "1", "--recipient-key", str(keys.private_key)]
    sink = ["--sink", f"sqlite://{tmp_path / 'records.db'}"]
    assert run([*argv, *sink, "--trust", f"{HUB_ID}={hub}", "--seconds", "2"]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err
    assert "Traceback" not in err


def test_consumer_library_imports_without_the_hub_stack() -> None:
    code = (
        "import sys, gateway.envelope.consumer, gateway.envelope.inspect; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('aiomqtt', 'aiosqlite', 'paho') "
        "or m in ('gateway.model', 'gateway.config', 'gateway.daemon')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
