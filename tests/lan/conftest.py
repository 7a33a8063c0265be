"""Fixtures of the LAN inventory tests: the mDNS hub of tests/mdns (real multicast on loopback)."""

from __future__ import annotations

from tests.mdns.conftest import hub, mdns_config, no_leaked_tasks

__all__ = ["hub", "mdns_config", "no_leaked_tasks"]
