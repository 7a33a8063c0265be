"""theengsdecoder's own model definitions, evaluated here once theengs has named a device's model.

Decoders cost as much as publishing (docs/performance.md); for theengs: ``decodeBLE`` parses
every model's JSON definition in its table anew until one matches, ~120 us for a Mi scale, more
than everything else the hub does with the reading. The definitions themselves are public
through theengs's API (``getAttribute(model_id, "condition" | "properties")``), so once theengs
has decoded a message as model M, ``compile_model(M)`` turns M's definition into Python and
later messages whose bytes satisfy M's condition are decoded from it in a few microseconds, with
theengs's arithmetic.

Only a subset of the definition language is compiled: conditions on the service data, its UUID
and the name (``index``, ``contain``, length comparisons, ``|`` and ``&``); properties read with
``value_from_hex_data`` (with ``/ * + -`` post-processing), ``static_value``, ``bit_static_value``
and ``revmac_from_hex_data``, under flat service-data conditions. A model using anything else
is not compiled; a model id theengs gives several definitions (a scale's kg and lb variants)
is compiled from the first, and the others' messages keep going to theengs; a message the
compiled form cannot read (too short for a property) is handed to theengs too. theengs stays
the decoder of record; this is its shortcut.
tests/ble/test_theengs_fast.py checks both give the same result on generated messages of every
model the drivers serve.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable
from typing import Final, NamedTuple

Reading = dict[str, object]
"""theengs's JSON answer as ``json.loads`` gives it (the model's properties and identity)."""

_SERVICE_DATA: Final = "servicedata"
_SOURCES: Final = frozenset({_SERVICE_DATA, "uuid", "name"})  # what the hub gives theengs
_LENGTH_OPS: Final[dict[str, Callable[[int, int], bool]]] = {
    "=": int.__eq__,
    ">=": int.__ge__,
    ">": int.__gt__,
    "<=": int.__le__,
    "<": int.__lt__,
}
_ARITHMETIC: Final[dict[str, Callable[[float, float], float]]] = {
    "/": float.__truediv__,
    "*": float.__mul__,
    "+": float.__add__,
    "-": float.__sub__,
}


class UnreadableError(Exception):
    """The compiled model cannot read this message; theengs decodes it instead."""


class Message(NamedTuple):
    """What theengs is given: service data as lower-case hex, its 16-bit UUID (hex), the name."""

    data: str
    uuid: str
    name: str | None


Check = Callable[[Message], bool]
Property = Callable[[Message, Reading], None]


class Model(NamedTuple):
    """One theengs model definition as Python: its condition and its properties in order.

    Its answers hold what theengs's do except ``type``, the device class theengs derives from
    the model's tag (the drivers ignore it); models whose tag carries flags, from which theengs
    derives more keys, are not compiled.
    """

    model_id: str
    identity: Reading  # brand, model, model_id: echoed in theengs's answer
    condition: Check
    properties: tuple[Property, ...]

    def decode(self, message: Message) -> Reading | None:
        """Return theengs's answer for ``message``; None if the model's condition fails.

        Raise UnreadableError when only theengs can tell (a property's bytes are missing).
        """
        if not self.condition(message):
            return None
        out = dict(self.identity)
        for prop in self.properties:
            prop(message, out)
        if len(out) == len(self.identity):
            raise UnreadableError  # no property applies: theengs has no answer either
        return out


class _UnsupportedError(Exception):
    """The definition uses something this module does not compile."""


class _ShortError(Exception):
    """An ``index`` clause reaches past the end of the data."""


@functools.cache
def compile_model(model_id: str) -> Model | None:
    """Return theengs's model ``model_id`` compiled, or None if its definition is not supported."""
    attribute: Callable[[str, str], str] = importlib.import_module("TheengsDecoder").getAttribute
    try:
        _check_tag(attribute(model_id, "tag") or "")
        condition = json.loads(attribute(model_id, "condition"))
        properties = json.loads(attribute(model_id, "properties"))
        identity: Reading = {
            key: attribute(model_id, key) for key in ("brand", "model", "model_id")
        }
        return Model(
            model_id,
            identity,
            _condition(condition),
            tuple(_property(key, spec) for key, spec in properties.items()),
        )
    except (_UnsupportedError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def _check_tag(tag: str) -> None:
    if len(tag) > 2:  # flags after the device class: theengs adds keys derived from them
        raise _UnsupportedError("tag flags")


def _source(message: Message, name: str) -> str | None:
    if name == _SERVICE_DATA:
        return message.data
    if name == "uuid":
        return message.uuid
    return message.name  # the only other source _clause admits


def _condition(tokens: list[object]) -> Check:
    """An AND of ORs: ``a | b & c`` is ``(a or b) and c``, as theengs reads its conditions."""
    groups: list[list[Check]] = [[]]
    i = 0
    while i < len(tokens):
        clause, i = _clause(tokens, i)
        groups[-1].append(clause)
        if i < len(tokens):
            joint = tokens[i]
            if joint == "&":
                groups.append([])
            elif joint != "|":
                raise _UnsupportedError(str(joint))
            i += 1
    if not all(groups):
        raise _UnsupportedError("empty condition")
    frozen = tuple(tuple(group) for group in groups)

    def check(m: Message) -> bool:
        try:
            return all(any(check(m) for check in group) for group in frozen)
        except _ShortError:
            return False

    return check


def _clause(tokens: list[object], i: int) -> tuple[Check, int]:
    """Compile one clause from ``tokens[i]``; return it and the index after it."""
    source = tokens[i]
    if source not in _SOURCES or not isinstance(source, str):
        raise _UnsupportedError(f"clause on {source!r}")
    checks: list[Check] = []
    i += 1
    op = tokens[i]
    if isinstance(op, str) and op in _LENGTH_OPS:
        if source != _SERVICE_DATA or not isinstance(tokens[i + 1], int):
            raise _UnsupportedError("length of a source other than the service data")
        compare, length = _LENGTH_OPS[op], int(str(tokens[i + 1]))
        checks.append(lambda m: compare(len(m.data), length))
        i += 2
        op = tokens[i] if i < len(tokens) else None
    if op == "index":
        at, text = tokens[i + 1], tokens[i + 2]
        if not isinstance(at, int) or not isinstance(text, str):
            raise _UnsupportedError("index clause")
        checks.append(_index_check(source, at, text))
        i += 3
    elif op == "contain":
        text = tokens[i + 1]
        if not isinstance(text, str):
            raise _UnsupportedError("contain clause")
        checks.append(lambda m: (value := _source(m, source)) is not None and text in value)
        i += 2
    elif not checks:
        raise _UnsupportedError(str(op))
    return (lambda m: all(check(m) for check in checks)), i


def _index_check(source: str, at: int, text: str) -> Check:
    end = at + len(text)

    def check(m: Message) -> bool:
        value = _source(m, source)
        if value is None:
            return False
        if len(value) < end:
            raise _ShortError  # theengs: the whole condition fails, whatever the alternatives
        return value[at:end] == text

    return check


def _property_condition(tokens: list[object] | None) -> Check:
    """A property's condition: ``[servicedata, index, text]`` clauses joined left to right."""
    if tokens is None:
        return lambda m: True
    clauses: list[tuple[int, str, bool]] = []
    joints: list[str] = []
    i = 0
    while i < len(tokens):
        source, at = tokens[i], tokens[i + 1]
        inverse = tokens[i + 2] == "!"
        text = tokens[i + 2 + inverse]
        if source != _SERVICE_DATA or not isinstance(at, int) or not isinstance(text, str):
            raise _UnsupportedError("property condition")
        clauses.append((at, text, inverse))
        i += 3 + inverse
        if i < len(tokens):
            joint = tokens[i]
            if joint not in ("|", "&"):
                raise _UnsupportedError(str(joint))
            joints.append(str(joint))
            i += 1

    def check(m: Message) -> bool:
        met = False
        for n, (at, text, inverse) in enumerate(clauses):
            met = (m.data[at : at + len(text)] == text) != inverse
            joint = joints[n] if n < len(joints) else None
            if joint == "|" and not met:
                continue
            if joint == "&" and met:
                continue
            break
        return met

    return check


def _property(key: str, spec: dict[str, object]) -> Property:
    """Compile one property: its condition, its decoder and post-processing, its output key."""
    if set(spec) - {"condition", "decoder", "post_proc", "is_bool"}:
        raise _UnsupportedError(key)
    name = key.lstrip("_")
    if name.startswith("."):
        raise _UnsupportedError("calibration value")
    condition = _property_condition(spec.get("condition"))  # type: ignore[arg-type]
    decoder = spec["decoder"]
    if not isinstance(decoder, list) or not decoder:
        raise _UnsupportedError(key)
    read = _reader(decoder, spec.get("post_proc"), "is_bool" in spec)

    def decode(m: Message, out: Reading) -> None:
        if not condition(m):
            return
        value = read(m)
        out[name] = value
        if name.startswith("tempc") and isinstance(value, int | float):
            out["tempf" + name[5:]] = _number(float(value) * 1.8 + 32)

    return decode


def _reader(decoder: list[object], post: object, is_bool: bool) -> Callable[[Message], object]:
    kind = decoder[0]
    if kind == "static_value":
        static = decoder[1]
        value = bool(static) if is_bool and not isinstance(static, str) else static
        return lambda m: value
    if decoder[1] != _SERVICE_DATA:
        raise _UnsupportedError("a decoder reading another source than the service data")
    if kind == "bit_static_value":
        at, bit, off, on = decoder[2], decoder[3], decoder[4], decoder[5]
        if not isinstance(at, int) or not isinstance(bit, int) or post is not None:
            raise _UnsupportedError("bit_static_value")
        char, shift = at, bit

        def read_bit(m: Message) -> object:
            if len(m.data) <= char:
                raise UnreadableError
            return on if int(m.data[char], 16) >> shift & 1 else off

        return read_bit
    if kind == "revmac_from_hex_data":
        at = decoder[2]
        if not isinstance(at, int) or post is not None:
            raise _UnsupportedError("revmac_from_hex_data")

        def read_mac(m: Message) -> object:
            raw = m.data[at : at + 12]
            if len(raw) < 12:
                raise UnreadableError
            return ":".join(raw[n : n + 2] for n in range(10, -2, -2)).upper()

        return read_mac
    if kind == "value_from_hex_data":
        return _value_reader(decoder, post, is_bool)
    raise _UnsupportedError(str(kind))


def _value_reader(
    decoder: list[object], post: object, is_bool: bool
) -> Callable[[Message], object]:
    at, length = decoder[2], decoder[3]
    reverse = bool(decoder[4]) if len(decoder) > 4 else False
    signed = bool(decoder[5]) if len(decoder) > 5 else True
    if not isinstance(at, int) or not isinstance(length, int) or length % 2:
        raise _UnsupportedError("value_from_hex_data")
    steps = _post_processing(post)
    end = at + length

    def read(m: Message) -> object:
        raw = m.data[at:end]
        if len(raw) < length:
            raise UnreadableError
        if reverse:
            raw = "".join(raw[n : n + 2] for n in range(length - 2, -2, -2))
        value = int(raw, 16)
        if signed:
            if length <= 2 and value > 0x7F:
                value -= 0x100
            elif length == 4 and value > 0x7FFF:
                value -= 0x10000
        result = float(value)
        for apply, operand in steps:
            result = apply(result, operand)
        return bool(result) if is_bool else _number(result)

    return read


def _post_processing(post: object) -> tuple[tuple[Callable[[float, float], float], float], ...]:
    if post is None:
        return ()
    if not isinstance(post, list) or len(post) % 2:
        raise _UnsupportedError("post_proc")
    steps = []
    for op, operand in zip(post[::2], post[1::2], strict=True):
        if (
            op not in _ARITHMETIC
            or isinstance(operand, bool)
            or not isinstance(operand, int | float)
        ):
            raise _UnsupportedError(f"post_proc {op}")
        steps.append((_ARITHMETIC[op], float(operand)))
    return tuple(steps)


def _number(value: float) -> float | int:
    # theengs's answer is JSON printed by ArduinoJson: a whole double without a fraction (so
    # json.loads gives an int), others with at most 9 decimals.
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return round(value, 9)
