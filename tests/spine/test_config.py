"""The configuration file: validated once, errors name the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.timers import DEFAULT_SLACK_S

BASE = {"hub_id": "hub-1", "state_dir": "state"}


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = parse_config(BASE, tmp_path)
    assert config.state_dir == tmp_path / "state"
    assert config.topic_root == "consentgate/hub-1"
    assert config.mqtt.port == 1883
    assert config.outbox.overflow == "drop_oldest"
    assert config.simulator.devices == 0
    assert config.timer_slack_s == DEFAULT_SLACK_S == 0.25


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"state_dir": "s"}, "hub_id", "missing"),
        ({**BASE, "hub_id": "a/b"}, "hub_id", "'a/b'"),
        ({**BASE, "hub_id": "hub-1\n"}, "hub_id", "not allowed"),
        ({**BASE, "mqtt": {"base_topic": "a/b\n"}}, "mqtt.base_topic", "a/b"),
        ({**BASE, "mqtt": {"port": 70000}}, "mqtt.port", "out of range"),
        ({**BASE, "mqtt": {"port": "x"}}, "mqtt.port", "not an integer"),
        ({**BASE, "mqtt": {"password": "hunter2"}}, "mqtt.password", "password_file"),
        ({**BASE, "mqtt": {"base_topic": "a/#"}}, "mqtt.base_topic", "wildcards"),
        # Portable topics: a '.' is a level separator to RabbitMQ and refused by NATS < 2.10.
        ({**BASE, "hub_id": "hub.1"}, "hub_id", "'hub.1' is not allowed"),
        ({**BASE, "hub_id": "hub.1"}, "hub_id", "no '.'"),
        ({**BASE, "mqtt": {"base_topic": "fleet.eu"}}, "mqtt.base_topic", "'fleet.eu'"),
        ({**BASE, "mqtt": {"base_topic": "a/b.c"}}, "mqtt.base_topic", "no '.'"),
        ({**BASE, "mqtt": {"base_topic": "a/b/c/d/e"}}, "mqtt.base_topic", "1-4 levels"),
        ({**BASE, "outbox": {"overflow": "explode"}}, "outbox.overflow", "drop_oldest"),
        ({**BASE, "crypto": {"alg": 3}}, "crypto.alg", "ChaCha20"),
        ({**BASE, "retention": {"weather": 5}}, "retention.weather", "unknown data category"),
        ({**BASE, "simulatr": {}}, "simulatr", "allowed here"),
        (
            {**BASE, "discovery": {"ble": {"scanning_mode": "loud"}}},
            "discovery.ble.scanning_mode",
            "passive",
        ),
        ({**BASE, "simulator": {"devices": True}}, "simulator.devices", "boolean"),
        ({**BASE, "timer_slack_s": 5}, "timer_slack_s", "out of range"),
    ],
)
def test_errors_name_key_value_and_allowed(
    raw: dict[str, object], key: str, fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("hub_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config" / "consentgate.example.toml"
    config = load_config(example)
    assert config.hub_id
    text = example.read_text()
    for key in (
        "hub_id",
        "state_dir",
        "base_topic",
        "password_file",
        "recipient_public_key",
        "epoch_max_age_s",
        "epoch_max_records",
        "max_rows",
        "max_bytes",
        "overflow",
        "rate_hz",
        "interfaces",
        "adapter",
        "[retention]",
    ):
        assert key in text


def test_config_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('hub_id = "x"\nstate_dir = "s"\n[outbox]\noverflow = "explode"\n')
    assert main(["config", "check", str(bad)]) == 2
    assert "outbox.overflow" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    (tmp_path / "r.pub").write_bytes(bytes(32))
    good.write_text('hub_id = "x"\nstate_dir = "s"\n[crypto]\nrecipient_public_key = "r.pub"\n')
    assert main(["config", "check", str(good)]) == 0
