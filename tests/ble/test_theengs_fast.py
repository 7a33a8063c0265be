"""theengs's model definitions compiled: the same answer as theengsdecoder on every message the
compiled model accepts, for every model the drivers serve."""

from __future__ import annotations

import importlib
import json
import random
from typing import Any

import pytest

from drivers.ble import Advert, BleDecoder, Decoded, DecodeError
from drivers.ble.theengs import MIBEACON_UUID, WEIGHT_SCALE_UUID, MiBeaconDriver, MiScaleDriver
from drivers.ble.theengs_fast import Message, UnreadableError, compile_model

THEENGS: Any = importlib.import_module("TheengsDecoder")
SERVED = (*MiScaleDriver.models, *MiBeaconDriver.models)
# Not in the hub's answer: input echoes, and the device class theengs derives from its tag.
NOT_COMPARED = frozenset({"servicedata", "servicedatauuid", "name", "type"})


def theengs(message: Message) -> dict[str, object] | None:
    """theengsdecoder's own answer, without what NOT_COMPARED lists."""
    doc = {"servicedata": message.data, "servicedatauuid": f"0x{message.uuid}"}
    if message.name:
        doc["name"] = message.name
    out = THEENGS.decodeBLE(json.dumps(doc))
    if out is None:
        return None
    return {k: v for k, v in json.loads(out).items() if k not in NOT_COMPARED}


def shaped(model_id: str, rnd: random.Random) -> Message:
    """A message built to satisfy one alternative of each part of the model's condition, then
    often corrupted in one place (so both accepted and refused messages are tried)."""
    tokens = json.loads(THEENGS.getAttribute(model_id, "condition"))
    groups: list[list[list[object]]] = [[[]]]
    for token in tokens:
        if token == "&":
            groups.append([[]])
        elif token == "|":
            groups[-1].append([])
        else:
            groups[-1][-1].append(token)
    length, writes, uuid, name = (
        rnd.randrange(4, 44, 2),
        [],
        rnd.choice(["181d", "181b", "fe95"]),
        None,
    )
    for group in groups:
        clause = rnd.choice(group)
        for n, token in enumerate(clause):
            if token in ("=", ">=") and isinstance(clause[n + 1], int):
                length = int(str(clause[n + 1])) + (0 if token == "=" else rnd.randrange(0, 8, 2))
            elif token in ("index", "contain"):
                text = str(clause[n + 2] if token == "index" else clause[n + 1])
                at = int(str(clause[n + 1])) if token == "index" else 0
                if clause[0] == "uuid":
                    uuid = text
                elif clause[0] == "name":
                    name = text
                else:
                    writes.append((at, text))
    data = list(f"{rnd.getrandbits(4 * length):0{length}x}")
    for at, text in writes:
        data[at : at + len(text)] = text
    if rnd.random() < 0.3:
        data[rnd.randrange(len(data))] = rnd.choice("0123456789abcdef")
    if rnd.random() < 0.1:
        data = data[: rnd.randrange(2, len(data) + 1, 2)] if len(data) > 2 else data
    return Message("".join(data), uuid, name)


@pytest.mark.parametrize("model_id", MiScaleDriver.models)
def test_every_scale_model_compiles(model_id: str) -> None:
    assert compile_model(model_id) is not None


def test_a_model_whose_tag_has_flags_is_left_to_theengs() -> None:
    assert THEENGS.getAttribute("MUE4094RT", "tag") == "0404"
    assert compile_model("MUE4094RT") is None


@pytest.mark.parametrize("model_id", SERVED)
def test_compiled_model_answers_as_theengs_does(model_id: str) -> None:
    model = compile_model(model_id)
    if model is None:
        pytest.skip(f"{model_id} is not compiled: theengs decodes every message")
    rnd = random.Random(model_id)
    accepted = 0
    for _ in range(1500):
        message = shaped(model_id, rnd)
        try:
            ours = model.decode(message)
        except UnreadableError:
            continue
        if ours is None:
            continue
        accepted += 1
        assert ours == theengs(message), message
    assert accepted > 300  # the generator reaches the compiled path, so the check means something


def outcome(decoder: BleDecoder, address: str, uuid: str, payload: bytes) -> object:
    """What ``decoder`` makes of ``payload``: its Decoded, or the error it raises."""
    advert = Advert(address, -60, None, {uuid: payload})
    try:
        return decoder.decode(advert, payload, 0.0)
    except DecodeError as exc:
        return f"DecodeError: {exc}"


def test_a_scale_decodes_as_theengs_alone_does_once_its_model_is_learned() -> None:
    decoder = MiScaleDriver().decoder()
    rnd = random.Random(7)
    for _ in range(300):
        control = rnd.choice([0x22, 0x62, 0xA2, 0xE2, 0x02, 0x23])  # stable, removed, unstable, lb
        payload = bytes([control]) + bytes(rnd.getrandbits(8) for _ in range(9))
        # a fresh decoder has learned no model: theengs alone decodes it
        fresh = MiScaleDriver().decoder()
        expected = outcome(fresh, "F2:CA:FE:00:00:0A", WEIGHT_SCALE_UUID, payload)
        assert outcome(decoder, "F2:CA:FE:00:00:0A", WEIGHT_SCALE_UUID, payload) == expected


def test_a_message_the_learned_model_refuses_still_gets_theengs_answer() -> None:
    decoder = MiBeaconDriver().decoder()
    frame = bytes.fromhex("5020aa01da1e5600c1a4380d1004d9004e01")  # LYWSDCGQ: 21.7 C, 33.4 %
    first = outcome(decoder, "A4:C1:38:56:00:1E", MIBEACON_UUID, frame)
    assert isinstance(first, Decoded)
    assert (first.model, first.fields["temperature"]) == ("LYWSDCGQ", 21.7)
    for product in (b"\x00\x00", b"\x5b\x04", b"\x98\x00"):  # other or no model
        other = frame[:2] + product + frame[4:]
        fresh = MiBeaconDriver().decoder()
        expected = outcome(fresh, "A4:C1:38:56:00:1E", MIBEACON_UUID, other)
        assert outcome(decoder, "A4:C1:38:56:00:1E", MIBEACON_UUID, other) == expected


def test_an_index_past_the_end_of_the_data_fails_the_whole_condition() -> None:
    # theengs stops evaluating a condition at an ``index`` clause the data is too short for,
    # even when a later alternative would hold.
    from drivers.ble.theengs_fast import _condition  # noqa: PLC0415 - the rule itself is tested

    condition = _condition(["servicedata", "index", 30, "ab", "|", "servicedata", "index", 0, "22"])
    assert not condition(Message("22" + "00" * 4, "181d", None))
    assert condition(Message("22" + "00" * 20, "181d", None))
