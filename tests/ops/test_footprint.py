"""What ``consentgate run`` loads and keeps: the demo and the HTTP client stay out until needed;
the collector is left as the daemon found it.

aiohttp (~10 MB), the demo's simulators and the embedded broker are a third of the daemon's
memory; a hub without Wi-Fi devices must never import them (P5 in bench/README.md).
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from tests.support.hub import hub_config, running_hub
from tests.support.mosquitto import Mosquitto

HEAVY = ("aiohttp", "amqtt", "drivers.shelly.simulator", "gateway.demo.show", "gateway.demo.broker")


def test_the_daemon_and_its_mdns_transport_import_no_demo_and_no_http_client() -> None:
    probe = (
        "import sys, gateway.cli, gateway.daemon, gateway.transports, gateway.discovery.mdns\n"
        "gateway.cli.build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == ""


async def test_a_stopped_hub_leaves_the_garbage_collector_as_it_found_it(
    broker: Mosquitto, tmp_path: Path
) -> None:
    # The daemon freezes what is alive at READY (fewer long collections under load); a process
    # that runs hubs one after another must get back the ability to collect what each left.
    async with running_hub(hub_config(tmp_path, broker.port, "gc-freeze")):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
