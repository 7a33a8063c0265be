"""A flood of mixed bad control requests, as a hostile or broken client sends them.

``flood(root, count, seed)`` returns ``count`` requests: random bytes, 256 KiB JSON, 10,000-deep
nesting, lone surrogates, NaN, wrong types, unknown device ids, unknown commands, and response
topics inside the hub's own tree, each with a transaction where its form allows one to be
read (``FloodRequest.transaction``: the one the hub must echo, or None). ``send_flood``
publishes them with paho at QoS 0 as fast as the socket takes them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPLY_ROOT: Final = "flood-replies"
"""Response topics the flood asks for (outside the hub's tree: allowed, one client each)."""


@dataclass(frozen=True, slots=True)
class FloodRequest:
    """One request of the flood: where it goes, its bytes, the answer it expects."""

    command: str
    payload: bytes
    transaction: str | None
    response_topic: str | None


def _kinds(root: str) -> list[Callable[[random.Random, str], FloodRequest]]:
    def random_bytes(rng: random.Random, tid: str) -> FloodRequest:
        return FloodRequest("health", rng.randbytes(rng.randint(1, 300)), None, None)

    def huge(rng: random.Random, tid: str) -> FloodRequest:
        body = b'{"transaction":"' + tid.encode() + b'","x":"' + b"a" * 262_144 + b'"}'
        return FloodRequest("consent/get", body, tid, None)

    def deep(rng: random.Random, tid: str) -> FloodRequest:
        body = b'{"transaction":"' + tid.encode() + b'","x":' + b"[" * 10_000 + b"]" * 10_000
        return FloodRequest("devices", body + b"}", tid, None)

    def surrogate(rng: random.Random, tid: str) -> FloodRequest:
        body = f'{{"transaction":"{tid}","device":"\\ud800\\udfff\\ud800"}}'.encode()
        return FloodRequest("device", body, tid, None)

    def nan(rng: random.Random, tid: str) -> FloodRequest:
        return FloodRequest(
            "permit_join", f'{{"transaction":"{tid}","duration":NaN}}'.encode(), tid, None
        )

    def wrong_type(rng: random.Random, tid: str) -> FloodRequest:
        body = json.dumps({"transaction": tid, "device": [1, {"a": None}], "name": 7})
        return FloodRequest("rename", body.encode(), tid, None)

    def unknown_id(rng: random.Random, tid: str) -> FloodRequest:
        body = json.dumps({"transaction": tid, "device": f"{rng.getrandbits(64):016x}"})
        return FloodRequest("device", body.encode(), tid, None)

    def unknown_command(rng: random.Random, tid: str) -> FloodRequest:
        name = f"nope/{rng.getrandbits(32):08x}/AA:BB:CC:DD:EE:FF"
        return FloodRequest(name, json.dumps({"transaction": tid}).encode(), tid, None)

    def own_tree_reply(rng: random.Random, tid: str) -> FloodRequest:
        body = json.dumps({"transaction": tid}).encode()
        return FloodRequest("health", body, tid, f"{root}/status")

    def other_client(rng: random.Random, tid: str) -> FloodRequest:
        body = json.dumps({"transaction": tid, "flag": "nope", "state": "maybe"}).encode()
        return FloodRequest("consent/get", body, tid, f"{REPLY_ROOT}/{rng.randrange(50)}")

    return [
        random_bytes,
        huge,
        deep,
        surrogate,
        nan,
        wrong_type,
        unknown_id,
        unknown_command,
        own_tree_reply,
        other_client,
    ]


def flood(root: str, count: int, seed: int = 14) -> list[FloodRequest]:
    """Return ``count`` bad requests for the hub at ``root``, mixed evenly, reproducibly."""
    rng = random.Random(seed)
    kinds = _kinds(root)
    # a 256 KiB body costs the broker and the hub a copy each: one in 100, as in a real flood
    weights = [10 if kind.__name__ != "huge" else 1 for kind in kinds]
    chosen = rng.choices(kinds, weights, k=count)
    return [kind(rng, f"flood-{i}") for i, kind in enumerate(chosen)]


def send_flood(client: paho.Client, root: str, requests: Sequence[FloodRequest]) -> None:
    """Publish ``requests`` at QoS 0 through ``client`` (connected, MQTT 5, network loop on)."""
    for request in requests:
        props = None
        if request.response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = request.response_topic
        client.publish(
            f"{root}/request/{request.command}", request.payload, qos=0, properties=props
        )
