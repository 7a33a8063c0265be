"""Hub ids are portable topic segments in the sealer and the envelope format too.

Config already refuses a hub id with a ``.``; the sealer and the announcement parser refuse it
as well, while the envelope bytes of a valid hub are unchanged (the golden vectors in
tests/vectors still open).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.envelope.errors import MalformedError
from gateway.envelope.format import EpochCore, parse_core
from gateway.envelope.sealer import Sealer
from gateway.model import Observation


def _sealer(hub_id: str) -> Sealer:
    return Sealer(
        hub_id=hub_id,
        topic_root=f"fleet/{hub_id}",
        signing_key=Ed25519PrivateKey.generate(),
        recipient=X25519PrivateKey.generate().public_key(),
        alg=1,
    )


@pytest.mark.parametrize("hub_id", ["hub.1", "a/b", "", "x" * 65, "hub 1"])
def test_the_sealer_refuses_a_hub_id_that_is_not_a_topic_segment(hub_id: str) -> None:
    with pytest.raises(ValueError, match=r"\[A-Za-z0-9_-\]"):
        _sealer(hub_id)


@pytest.mark.parametrize("hub_id", ["hub-1", "Hub_2", "x" * 64])
def test_the_sealer_accepts_portable_hub_ids(hub_id: str) -> None:
    rows = _sealer(hub_id).seal_batch(
        [Observation("00" * 8, "telemetry.environment", 1.0e9, {"t": 1.0})], lambda _c: 60.0
    )
    assert [r.topic.split("/")[1] for r in rows] == [hub_id, hub_id]
    core = EpochCore(hub_id, 1, b"\0" * 8, 1, 0, 3600, b"")
    assert parse_core(core.encode()).hub_id == hub_id


def test_an_announcement_core_with_a_dotted_hub_id_is_malformed() -> None:
    core = EpochCore("hub.1", 1, b"\0" * 8, 1, 0, 3600, b"")
    with pytest.raises(MalformedError, match=r"hub id is not 1-64 of \[A-Za-z0-9_-\]"):
        parse_core(core.encode())
