"""Fuzz every input the hub takes from outside: BLE adverts, TXT records, RPC answers, MQTT
commands, and envelopes at the consumer.

``python -m bench.fuzz_inputs [--quick] [--scale X] [--seed S] [--only TARGET]``. Each target
starts from genuine inputs and feeds mutated and random ones to the code the transports call:

- ``ble``: ``BleIngest`` classify -> ``is_duplicate`` -> ``decode`` (drivers.ble match, dedupe,
  the BTHome fast path, bthome-ble, theengsdecoder) and ``driver.model`` (the candidate path),
  with genuine, wrong and missing bind keys. The only typed error, ``DecodeError``, is caught
  inside ``BleIngest`` (counted), so anything escaping is a crash.
- ``txt``: ``drivers.shelly`` ``parse_announcement`` on instance names and TXT properties as
  zeroconf hands them over (bytes keys, bytes or None values); allowed: ``DeviceError``.
- ``rpc``: ``parse_info`` and ``parse_status`` on what ``json.loads`` makes of mutated device
  answers (bodies it refuses are the transport's typed ``bad_json``) and on random JSON values;
  allowed: ``DeviceError``.
- ``commands``: ``Router.dispatch`` of a real hub (in this process, its database in a temporary
  directory, a loopback broker) for every registered command with random and mutated JSON
  (each command's parameter names found by probing its handler),
  plus requests that are bad by construction (not JSON, not an object, unknown command, an
  unknown parameter, a bad transaction id, over 64 KiB). Every answer must be ``ok`` or an
  ``error`` with a stable code other than ``internal`` (which means a handler raised), within
  ``ANSWER_TIMEOUT_S`` (a request never answered is reported with where its handler waits);
  every bad-by-construction request must be answered with an error. A fresh hub serves every
  ``SESSION`` requests; paired Wi-Fi and BLE devices come from sightings and a stand-in pairer.
- ``envelopes``: ``bench.fuzz_envelope`` (``Consumer.accept_announcement``, ``Consumer.open``,
  ``inspect.describe``); allowed: the typed envelope errors.

Crashes are grouped by exception type and the innermost project frame, each with one input
that causes it. Writes bench/results/fuzz_inputs.json.

The targets live in ``bench.fuzz`` (one module each: ``ble``, ``txt``, ``rpc``, ``commands``,
with the parameters of every command derived from its handler by ``bench.fuzz.params``); this
module is the campaign's entry point, kept where the fault campaign and the tests import it.
"""

from __future__ import annotations

from bench.fuzz.campaign import FULL, QUICK, TARGETS, main, print_findings, run_campaign, run_target
from bench.fuzz.findings import Findings

__all__ = [
    "FULL",
    "QUICK",
    "TARGETS",
    "Findings",
    "main",
    "print_findings",
    "run_campaign",
    "run_target",
]

if __name__ == "__main__":
    raise SystemExit(main())
