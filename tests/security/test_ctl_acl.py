"""``consentgate ctl`` as the operator user against Mosquitto with the shipped ACL template:
its MQTT 5 replies come through the hub's reply area (consentgate-replies/<hub>/operator/...),
its MQTT 3.1.1 replies through the hub's response topics; both are answered."""

from __future__ import annotations

import json
from pathlib import Path

from tests.operator.helpers import cli
from tests.security.conftest import HUB_A, OPERATOR, SecureBroker
from tests.support.hub import eventually, hub_config, running_hub


async def test_ctl_as_the_operator_is_answered_under_the_shipped_acl(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    port = secure_broker.port
    hub_password = str(secure_broker.password_file(HUB_A))
    config = hub_config(
        tmp_path, port, HUB_A, mqtt={"username": HUB_A, "password_file": hub_password}
    )
    operator = (
        "--host", "127.0.0.1", "--port", str(port), "--hub", HUB_A, "--username", OPERATOR,
        "--password-file", str(secure_broker.password_file(OPERATOR)), "--timeout", "5",
    )  # fmt: skip
    async with running_hub(config) as hub:
        await eventually(hub.link.connected.is_set, what="hub connected")

        changed = await cli("ctl", "consent", "set", "health", "on", "--json", *operator)
        assert changed.code == 0, changed.err
        assert hub.policy.flag("health") == "on"
        status = await cli("ctl", "status", *operator)
        assert status.code == 0, status.err
        assert "health=on" in status.out

        legacy = await cli("ctl", "--protocol", "4", "consent", "get", "--json", *operator)
        assert legacy.code == 0, legacy.err
        assert json.loads(legacy.out)["flags"]["health"] == "on"

    assert f"consentgate-replies/{HUB_A}/operator/" in secure_broker.log()  # MQTT 5 was used
    denied = [line for line in secure_broker.log().splitlines() if "Denied" in line]
    assert denied == []
