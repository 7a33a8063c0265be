"""What ``consentgate run`` loads: the demo and the HTTP client stay out until needed.

aiohttp (~10 MB), the demo's simulators and the embedded broker are a third of the daemon's
memory; a hub without Wi-Fi devices must never import them (P5 in bench/README.md).
"""

from __future__ import annotations

import subprocess
import sys

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
