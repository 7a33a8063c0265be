"""The consumer's hot path gives the reference functions' results, for any bytes.

``split_record`` against ``parse_record`` on real records (both algs, short and long
ciphertexts) and on mutated, truncated and extended ones: the same record or the same refusal.
``data_topic_aad`` and ``record_aad`` against the reference topic parser and AAD builders.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.envelope.errors import MalformedError
from gateway.envelope.format import (
    ParsedRecord,
    enc_structure,
    external_aad,
    external_aad_prefix,
    parse_record,
)
from gateway.envelope.hotpath import data_topic_aad, record_aad, split_record
from gateway.envelope.sealer import Sealer
from gateway.envelope.topics import parse_data_topic
from gateway.model import Observation, OutboxRow


def _records(alg: int, count: int = 300) -> list[OutboxRow]:
    sealer = Sealer(
        hub_id="hub-1",
        topic_root="fleet/hub-1",
        signing_key=Ed25519PrivateKey.generate(),
        recipient=X25519PrivateKey.generate().public_key(),
        alg=alg,
    )
    batch = [
        Observation(
            f"{i % 3:016x}",
            "telemetry.environment" if i % 2 else "health",
            1.0e9 + i,
            {"t": 21.5, "text": "x" * (i % 300)},  # ciphertexts of 1-, 2- and 3-byte heads
        )
        for i in range(count)
    ]
    return [r for r in sealer.seal_batch(batch, lambda _c: 60.0) if not r.retain]


RECORDS = _records(1) + _records(24, 20)


def _reference(payload: bytes) -> ParsedRecord | str:
    try:
        return parse_record(payload)
    except MalformedError as exc:
        return str(exc)


def _fast(payload: bytes) -> ParsedRecord | str:
    try:
        return split_record(payload)
    except MalformedError as exc:
        return str(exc)


@pytest.mark.parametrize("index", [0, 1, 2, 150, 299, 310])
def test_split_record_equals_parse_record_on_sealed_records(index: int) -> None:
    payload = RECORDS[index].payload
    assert split_record(payload) == parse_record(payload)


def test_every_sealed_record_takes_the_fast_path_with_the_same_result() -> None:
    seqs = {split_record(r.payload).seq for r in RECORDS}
    assert [split_record(r.payload) for r in RECORDS] == [parse_record(r.payload) for r in RECORDS]
    assert len(seqs) == 300  # seq 0-299: 1- and 2-byte partial IVs


@settings(max_examples=400, deadline=None)
@given(
    index=st.integers(0, len(RECORDS) - 1),
    at=st.integers(0, 400),
    byte=st.integers(0, 255),
    cut=st.integers(-3, 3),
)
def test_a_mutated_record_gives_the_same_result_or_refusal(
    index: int, at: int, byte: int, cut: int
) -> None:
    payload = bytearray(RECORDS[index].payload)
    payload[at % len(payload)] = byte
    if cut < 0:
        del payload[cut:]
    else:
        payload += bytes(cut)
    assert _fast(bytes(payload)) == _reference(bytes(payload))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_the_same_refusal(payload: bytes) -> None:
    assert _fast(b"\xd0\x83" + payload) == _reference(b"\xd0\x83" + payload)


def test_topic_and_aad_equal_the_reference_builders() -> None:
    for row in RECORDS[:20]:
        where, prefix = data_topic_aad(row.topic)
        assert where == parse_data_topic(row.topic)
        assert prefix == external_aad_prefix("hub-1", row.topic)
        parsed = parse_record(row.payload)
        assert record_aad(parsed.protected, prefix, parsed.seq) == enc_structure(
            parsed.protected, external_aad("hub-1", row.topic, parsed.seq)
        )


def test_a_bad_topic_is_refused_every_time_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(MalformedError):
            data_topic_aad("fleet/hub.1/data/0000000000000000/health")
