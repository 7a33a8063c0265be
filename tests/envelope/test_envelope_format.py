"""Envelope v1 bytes: hand-built structures equal cbor2's canonical encoding; parsers are strict."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.envelope import format as fmt
from gateway.envelope.alg import choose_alg, cpu_has_aes
from gateway.envelope.cbor import Tagged, decode
from gateway.envelope.errors import MalformedError, SealError
from gateway.envelope.keyschedule import EpochKeys, derive, nonce, partial_iv
from gateway.envelope.topics import (
    category_segment,
    data_topic,
    parse_data_topic,
    parse_epoch_topic,
    valid_base,
)

KID = bytes.fromhex("0102030405060708")
DEVICE = bytes.fromhex("0123456789abcdef")


@pytest.mark.parametrize("alg", [1, 24])
def test_protected_header_is_canonical_cbor(alg: int) -> None:
    protected = fmt.encode_protected(alg, KID, DEVICE, "health")
    assert cbor2.loads(protected) == {1: alg, 4: KID, -65537: DEVICE, -65538: "health"}
    assert protected == cbor2.dumps(
        {-65538: "health", -65537: DEVICE, 4: KID, 1: alg}, canonical=True
    )
    assert fmt.parse_protected(protected) == fmt.RecordHeader(alg, KID, DEVICE, "health")


@pytest.mark.parametrize("seq", [0, 1, 23, 24, 255, 256, 65535])
def test_record_and_aad_match_cbor2(seq: int) -> None:
    protected = fmt.encode_protected(1, KID, DEVICE, "usage")
    piv = partial_iv(seq)
    ciphertext = bytes(range(40))
    record = fmt.encode_record(protected, piv, ciphertext)
    expected = cbor2.CBORTag(16, [protected, {6: piv}, ciphertext])
    assert record == cbor2.dumps(expected, canonical=True)
    topic = "consentgate/hub-1/data/0123456789abcdef/usage"
    external = fmt.external_aad("hub-1", topic, seq)
    assert external == cbor2.dumps(["consentgate/1", "hub-1", topic, seq], canonical=True)
    aad = fmt.enc_structure(protected, external)
    assert aad == cbor2.dumps(["Encrypt0", protected, external], canonical=True)
    parsed = fmt.parse_record(record)
    assert (parsed.seq, parsed.protected, parsed.ciphertext) == (seq, protected, ciphertext)


def test_partial_iv_is_minimal_big_endian() -> None:
    assert partial_iv(0) == b"\x00"
    assert partial_iv(255) == b"\xff"
    assert partial_iv(256) == b"\x01\x00"
    assert partial_iv(65535) == b"\xff\xff"
    assert fmt.seq_of(b"\x01\x00") == 256
    with pytest.raises(MalformedError):
        fmt.seq_of(b"\x00\x05")  # not the shortest form of 5
    with pytest.raises(MalformedError):
        fmt.seq_of(b"\x01\x00\x00")  # 65536 and above never occur
    with pytest.raises(MalformedError):
        fmt.seq_of(b"")


def test_nonce_is_base_iv_xor_left_padded_seq() -> None:
    base_iv = bytes(range(1, 13))
    assert nonce(base_iv, 0) == base_iv
    assert nonce(base_iv, 0x0102) == bytes(range(1, 11)) + bytes([11 ^ 1, 12 ^ 2])
    keys = EpochKeys(b"\x07" * 32, "hub-1", 3, 1)
    for seq in (0, 1, 300, 65535):
        assert keys._nonce_for(seq) == nonce(keys.base_iv, seq)


@pytest.mark.parametrize(("alg", "length"), [(1, 16), (24, 32)])
def test_key_derivation_is_hkdf_sha256_with_cbor_info(alg: int, length: int) -> None:
    secret = bytes(range(32))
    keys = EpochKeys(secret, "hub-1", 9, alg)
    for label, size, got in (("Key", length, keys.key), ("IV", 12, keys.base_iv)):
        info = cbor2.dumps(["hub-1", 9, alg, label, size])
        want = HKDF(hashes.SHA256(), size, b"consentgate/1", info).derive(secret)
        assert bytes(got) == want
    other = derive(secret, hub_id="hub-2", epoch=9, alg=alg, label="Key", length=length)
    assert bytes(other) != bytes(keys.key)


def test_core_round_trips_and_is_canonical() -> None:
    core = fmt.EpochCore("hub-1", 7, KID, 24, 100, 3700, b"\x11" * 32)
    data = core.encode()
    assert fmt.parse_core(data) == core
    as_map = cbor2.loads(data)
    assert as_map == {
        "v": "consentgate/1",
        "gw": "hub-1",
        "ep": 7,
        "rkid": KID,
        "alg": 24,
        "nb": 100,
        "na": 3700,
        "max": 65536,
        "prev": b"\x11" * 32,
    }
    assert cbor2.dumps(as_map, canonical=True) == data


def _core(**changes: object) -> bytes:
    values: dict[str, object] = {
        "v": "consentgate/1",
        "gw": "hub-1",
        "ep": 1,
        "rkid": KID,
        "alg": 1,
        "nb": 10,
        "na": 20,
        "max": 65536,
        "prev": b"",
    }
    values.update(changes)
    return cbor2.dumps({k: v for k, v in values.items() if v is not _DROP}, canonical=True)


_DROP = object()


@pytest.mark.parametrize(
    "changes",
    [
        {"v": "consentgate/2"},
        {"gw": "hub/1"},
        {"gw": ""},
        {"ep": -1},
        {"ep": True},
        {"rkid": KID[:7]},
        {"alg": 3},
        {"nb": 30},
        {"max": 65537},
        {"max": 0},
        {"prev": b"\x00" * 31},
        {"extra": 1},
        {"prev": _DROP},
        {"nb": 1.5},
    ],
)
def test_core_parser_refuses_deviations(changes: dict[str, object]) -> None:
    assert fmt.parse_core(_core())  # the baseline is valid
    with pytest.raises(MalformedError):
        fmt.parse_core(_core(**changes))


@pytest.mark.parametrize(
    "record",
    [
        cbor2.CBORTag(17, [b"", {6: b"\x00"}, b"\x00" * 16]),
        cbor2.CBORTag(16, [b"", {6: b"\x00"}]),
        cbor2.CBORTag(16, [b"", {6: b"\x00", 5: b""}, b"\x00" * 16]),
        cbor2.CBORTag(16, [b"", {6: b"\x00"}, b"\x00" * 15]),
        cbor2.CBORTag(16, ["text", {6: b"\x00"}, b"\x00" * 16]),
        [b"", {6: b"\x00"}, b"\x00" * 16],
    ],
)
def test_record_parser_refuses_wrong_shapes(record: object) -> None:
    with pytest.raises(MalformedError):
        fmt.parse_record(cbor2.dumps(record))


def test_record_parser_refuses_bad_protected_headers() -> None:
    good = {1: 1, 4: KID, -65537: DEVICE, -65538: "health"}
    for bad in (
        {**good, 1: 2},
        {**good, 4: KID + b"\x00"},
        {**good, -65537: DEVICE[:7]},
        {**good, -65538: "a/b"},
        {**good, -65538: ""},
        {**good, 5: b""},
        {k: v for k, v in good.items() if k != 4},
    ):
        record = cbor2.CBORTag(16, [cbor2.dumps(bad), {6: b"\x00"}, b"\x00" * 16])
        with pytest.raises(MalformedError):
            fmt.parse_record(cbor2.dumps(record))


def test_plaintext_round_trip_keeps_types() -> None:
    fields: dict[str, fmt.Value] = {"f": 1.5, "i": -3, "b": True, "s": "é", "y": b"\x00", "n": None}
    data = fmt.encode_plaintext(1_700_000_000.5, fields)
    assert data == cbor2.dumps({"ts": 1_700_000_000.5, "fields": fields}, canonical=True)
    ts, decoded = fmt.decode_plaintext(data)
    assert ts == 1_700_000_000.5
    assert decoded == fields
    assert {k: type(v) for k, v in decoded.items()} == {k: type(v) for k, v in fields.items()}


_SCALARS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.booleans()
    | st.none()
    | st.text(max_size=40)
    | st.binary(max_size=40)
)


@settings(max_examples=400, deadline=None)
@given(
    ts=st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40),
    fields=st.dictionaries(st.text(max_size=30), _SCALARS, max_size=40),
)
def test_plaintext_bytes_are_cbor2s_canonical_encoding(
    ts: float, fields: dict[str, fmt.Value]
) -> None:
    expected = cbor2.dumps({"ts": float(ts), "fields": fields}, canonical=True)
    assert fmt.encode_plaintext(ts, fields) == expected


@pytest.mark.parametrize(
    "plaintext",
    [
        {"ts": 1, "fields": {}},
        {"ts": 1.0},
        {"ts": 1.0, "fields": {"a": [1]}},
        {"ts": 1.0, "fields": {1: 1}},
        {"ts": 1.0, "fields": {}, "x": 1},
        [1.0, {}],
        {"ts": float("nan"), "fields": {}},  # a sink would store no time (SQLite: NULL)
        {"ts": float("inf"), "fields": {}},
    ],
)
def test_plaintext_decoder_refuses_other_shapes(plaintext: object) -> None:
    with pytest.raises(MalformedError):
        fmt.decode_plaintext(cbor2.dumps(plaintext))


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), float("-inf")])
def test_a_reading_without_a_finite_time_is_never_sealed(ts: float) -> None:
    with pytest.raises(SealError, match="finite"):
        fmt.encode_plaintext(ts, {"temperature": 21.5})


@pytest.mark.parametrize(
    "hex_item",
    [
        "00",
        "17",
        "1818",
        "190100",
        "1a00010000",
        "1b0000000100000000",
        "20",
        "3863",
        "40",
        "4401020304",
        "60",
        "6449455446",
        "80",
        "83010203",
        "a0",
        "a201020304",
        "f4",
        "f5",
        "f6",
        "f93c00",
        "fa47c35000",
        "fb3ff199999999999a",
        "d083010203",
    ],
)
def test_strict_decoder_agrees_with_cbor2_on_the_basic_model(hex_item: str) -> None:
    data = bytes.fromhex(hex_item)
    ours = decode(data)
    theirs = cbor2.loads(data)
    if isinstance(ours, Tagged):
        assert isinstance(theirs, cbor2.CBORTag)
        assert (ours.tag, ours.value) == (theirs.tag, list(theirs.value))
    else:
        assert ours == (list(theirs) if isinstance(theirs, tuple) else theirs)


@pytest.mark.parametrize(
    "hex_item",
    [
        "",
        "18",
        "1c",
        "1f",
        "5f4101ff",
        "9f01ff",
        "bf0101ff",
        "f7",
        "f820",
        "ff",
        "a20101" + "0102",
        "a1810101",
        "62c328",
        "4201",
        "8301",
        "0000",
        "81" * 10 + "00",
    ],
)
def test_strict_decoder_refuses_what_v1_never_uses(hex_item: str) -> None:
    with pytest.raises(MalformedError):
        decode(bytes.fromhex(hex_item))


def test_topics_parse_and_refuse() -> None:
    parsed = parse_data_topic("a/b/hub-1/data/0123456789abcdef/health")
    assert (parsed.base, parsed.hub_id, parsed.device, parsed.category) == (
        "a/b",
        "hub-1",
        "0123456789abcdef",
        "health",
    )
    assert parse_epoch_topic("consentgate/hub-1/epoch") == ("consentgate", "hub-1")
    for bad in (
        "hub-1/data/0123456789abcdef/health",
        "x/hub-1/data/0123456789ABCDEF/health",
        "x/hub-1/data/0123456789abcde/health",
        "x/hub-1/dato/0123456789abcdef/health",
        "x/hub+1/data/0123456789abcdef/health",
        "x/hub-1/data/0123456789abcdef/",
        "x/hub.1/data/0123456789abcdef/health",
        "x/hub-1/data/0123456789abcdef/telemetry.environment",
    ):
        with pytest.raises(MalformedError):
            parse_data_topic(bad)
    with pytest.raises(MalformedError):
        parse_epoch_topic("consentgate/hub-1/epochs")
    with pytest.raises(MalformedError):
        parse_epoch_topic("consentgate/hub.1/epoch")


def test_topics_are_portable_and_name_categories_with_underscores() -> None:
    topic = data_topic("consentgate/hub-1", "0123456789abcdef", "telemetry.environment")
    assert topic == "consentgate/hub-1/data/0123456789abcdef/telemetry_environment"
    assert parse_data_topic(topic).category == category_segment("telemetry.environment")
    assert valid_base("a/b-c/d_e/f")
    for bad in ("a.b", "a/b/c/d/e", "a/+", "a/#", "", "a//b", "a b"):
        assert not valid_base(bad), bad


def test_alg_auto_follows_the_cpu_aes_flag() -> None:
    x86 = "processor : 0\nflags\t\t: fpu vme sse2 aes avx\n"
    pi4 = "processor : 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    pi5 = "processor : 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
    assert cpu_has_aes(x86) is True
    assert cpu_has_aes(pi4) is False
    assert cpu_has_aes(pi5) is True
    assert cpu_has_aes("processor : 0\n") is None
    assert choose_alg("24") == 24
    assert choose_alg("1") == 1
    with pytest.raises(ValueError, match="auto"):
        choose_alg("2")


def test_alg_auto_reads_cpuinfo(tmp_path: Path) -> None:
    base = tmp_path
    (base / "pi4").write_text("Features\t: fp asimd evtstrm crc32 cpuid\n")
    (base / "x86").write_text("flags\t\t: fpu aes\n")
    assert choose_alg("auto", base / "pi4") == 24
    assert choose_alg("auto", base / "x86") == 1
    assert choose_alg("auto", base / "missing") == 1
