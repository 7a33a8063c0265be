"""The outbox's burst writer sends exactly the bytes paho would, and notices a paho whose
internals moved."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.mqtt.writes import BurstWriter, compatible, remaining_length

_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _client(protocol: MQTTProtocolVersion) -> Any:
    """A paho client whose socket is one end of a socket pair (``client.peer``, the other)."""
    client: Any = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    client._sock, client.peer = socket.socketpair()
    _OPEN.extend((client._sock, client.peer))
    # as under aiomqtt: paho asks the event loop for a writer instead of writing itself
    client.on_socket_register_write = lambda *_: None
    client.on_socket_unregister_write = lambda *_: None
    client._sock.setblocking(False)
    client.peer.setblocking(False)
    return client


def _received(client: Any) -> bytes:
    """Read what reached the peer, letting paho write what it still queues (as the event
    loop's writer would)."""
    out = bytearray()
    while True:
        try:
            chunk = client.peer.recv(1 << 20)
        except BlockingIOError:
            chunk = b""
        out += chunk
        if client.want_write():
            client.loop_write()
        elif not chunk:
            return bytes(out)


def _paho_bytes(client: Any, mid: int, topic: str, payload: bytes, retain: bool) -> bytes:
    sent: list[bytes] = []

    def queue(command: int, packet: bytes, *rest: Any, **kw: Any) -> int:
        sent.append(bytes(packet))
        return 0

    client._packet_queue = queue
    client._send_publish(mid, topic.encode(), payload, qos=1, retain=retain)
    return sent[0]


def test_the_installed_paho_has_what_the_burst_writer_needs() -> None:
    assert compatible(paho.Client(CallbackAPIVersion.VERSION2))


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
@pytest.mark.parametrize("size", [0, 1, 120, 200, 16_383, 16_384, 2_097_151])
def test_a_burst_is_paho_s_packets_back_to_back(protocol: MQTTProtocolVersion, size: int) -> None:
    client = _client(protocol)
    writer = BurstWriter(client)
    packets = [
        ("consentgate/h/data/0123456789abcdef/health", bytes(size), False),
        ("consentgate/h/epoch", b"\x01\x02", True),
    ]
    mids = [writer.add(topic, payload, retain) for topic, payload, retain in packets]
    assert writer.flush()
    blob = _received(client)
    reference = _client(protocol)
    expected = b"".join(
        _paho_bytes(reference, mid, topic, payload, retain)
        for mid, (topic, payload, retain) in zip(mids, packets, strict=True)
    )
    assert blob == expected


def test_a_burst_is_written_at_once_when_nothing_of_paho_s_waits() -> None:
    client = _client(paho.MQTTv5)
    writer = BurstWriter(client)
    writer.add("t", b"x" * 100, False)
    assert writer.flush()
    assert len(client.peer.recv(1 << 16)) == 2 + 3 + 2 + 1 + 100  # no writer was needed
    assert not client.want_write()


def test_a_burst_waits_behind_what_paho_queued_before() -> None:
    client = _client(paho.MQTTv5)
    client.publish("first", b"paho's", qos=1)  # queued; paho waits for the loop's writer
    writer = BurstWriter(client)
    writer.add("second", b"burst", False)
    assert writer.flush()
    with pytest.raises(BlockingIOError):
        client.peer.recv(1 << 16)  # nothing overtook paho's packet
    sent = _received(client)
    assert sent.index(b"paho's") < sent.index(b"burst")


def test_packet_ids_skip_those_paho_has_in_flight() -> None:
    client = _client(paho.MQTTv5)
    client._out_messages[client._last_mid + 1] = object()
    writer = BurstWriter(client)
    assert writer.add("t", b"", False) == client._last_mid
    assert client._last_mid - 1 in client._out_messages


def test_a_burst_without_a_connection_is_refused() -> None:
    client = _client(paho.MQTTv5)
    writer = BurstWriter(client)
    writer.add("t", b"x", False)
    client._sock = None
    assert not writer.flush()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_152, b"\x80\x80\x80\x01"),
    ],
)
def test_remaining_length_is_the_variable_byte_integer(value: int, encoded: bytes) -> None:
    assert remaining_length(value) == encoded
