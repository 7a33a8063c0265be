"""config/rabbitmq-acl.sh on a private RabbitMQ node: a hub works in its own subtree, only there.

The script (rabbitmqctl against the node) creates two hubs and the consumer. Under it a real
hub daemon, connecting as its hub id, subscribes to its requests and publishes its records;
`consume`, connecting as the consumer, opens them, and its epoch resend request is answered.
A hub publishing into another hub's subtree is refused (RabbitMQ closes the connection: MQTT
3.1.1 has no negative PUBACK) and reaches nobody; its subscription to another hub is refused;
the consumer cannot publish records; a wrong password is refused.

The same users reach the node over AMQP 0-9-1, where a queue has no topic check: a hub, or the
consumer, cannot bind, consume, delete or publish into another hub's MQTT session queue (whose
name follows the client id); over MQTT, a client id of another user gets no subscription and a
hub cannot take over the consumer's durable session. The AMQP client is the one the node ships
(Erlang's amqp_client, run through `rabbitmqctl eval`), connecting to the node's AMQP listener
like any other client. The script refuses hub ids whose client ids another user has, before
changing anything, and run again on its node it sets the same permissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import hub_signing_key, load_recipient_private
from gateway.envelope.live import Broker, consume
from tests.fleet.brokers import RabbitMQ
from tests.support.hub import hub_config, running_hub

SCRIPT = Path(__file__).resolve().parents[2] / "config" / "rabbitmq-acl.sh"
RABBITMQCTL_DIR = "/usr/lib/rabbitmq/bin"  # the node's own tools, not Debian's su wrapper
BASE = "consentgate"
CONSUMER = "consentgate-consumer"
CONSUMER_ID = "consentgate-consume-acl"  # the consumer's client ids start consentgate-consume-
V311 = aiomqtt.ProtocolVersion.V311
REFUSED_S = 2.0  # the node closes a refused client's connection; aiomqtt notices by timeout
# ("bind", queue, key), ("publish", exchange, key), ("consume", queue) or ("delete", queue)
Operation = tuple[str, ...]

# One AMQP connection as $user (password read from $password_file on the node) to the node's
# AMQP listener; each operation on a channel of its own, since a refusal (403) closes the
# channel. A publish is asynchronous: the basic.qos after it returns once the node judged it.
AMQP = string.Template("""
{ok, Password} = file:read_file("$password_file"),
Uri = iolist_to_binary(["amqp://$user:", string:trim(Password), "@127.0.0.1:$port/%2F"]),
{ok, Params} = amqp_uri:parse(Uri),
{ok, C} = amqp_connection:start(Params),
Props = list_to_tuple(['P_basic' | lists:duplicate(14, undefined)]),
Run = fun
    (Ch, {bind, Q, Key}) ->
        amqp_channel:call(Ch, {'queue.bind', 0, Q, <<"amq.topic">>, Key, false, []});
    (Ch, {publish, X, Key}) ->
        Message = {amqp_msg, Props, <<"forged">>},
        ok = amqp_channel:call(Ch, {'basic.publish', 0, X, Key, false, false}, Message),
        amqp_channel:call(Ch, {'basic.qos', 0, 0, false});
    (Ch, {consume, Q}) ->
        Consume = {'basic.consume', 0, Q, <<>>, false, true, false, false, []},
        amqp_channel:subscribe(Ch, Consume, self());
    (Ch, {delete, Q}) ->
        amqp_channel:call(Ch, {'queue.delete', 0, Q, false, false, false})
end,
Try = fun(Op) ->
    {ok, Ch} = amqp_connection:open_channel(C),
    try Run(Ch, Op) of
        Answer when is_tuple(Answer) -> amqp_channel:close(Ch), ok
    catch exit:{{shutdown, {server_initiated_close, 403, Text}}, _} ->
        {match, [Kind]} = re:run(Text, "access to ([a-z]+)", [{capture, all_but_first, list}]),
        list_to_atom("refused_" ++ Kind)
    end
end,
Outcomes = [Try(Op) || Op <- $operations],
amqp_connection:close(C),
Outcomes.
""")


@dataclass(frozen=True)
class Users:
    """The node (ports, log, rabbitmqctl environment) and the users the script made there."""

    port: int
    amqp_port: int
    files: Path
    hubs: tuple[str, str]
    log: Path
    env: dict[str, str]  # the node's name, Erlang cookie and ports; its own rabbitmqctl first

    def refusals(self, user: str) -> list[str]:
        """Return the routing keys the node logged as refused to ``user``."""
        refused = re.compile(
            rf"access to topic '([^']+)' in exchange 'amq.topic' in vhost "
            rf"'/' refused for user '{re.escape(user)}'"
        )
        return refused.findall(self.log.read_text(errors="replace"))

    def script(self, *hubs: str) -> subprocess.CompletedProcess[str]:
        """Run config/rabbitmq-acl.sh for ``hubs`` (and the consumer) against the node."""
        env = {
            **self.env,
            "HUB_PASSWORD_FILE": str(self.files / "pw"),
            "CONSUMER_PASSWORD_FILE": str(self.files / "pw.consumer"),
        }
        return subprocess.run(
            ["sh", str(SCRIPT), *hubs], env=env, capture_output=True, text=True, check=False
        )

    def rabbitmqctl(self, *args: str) -> str:
        """Return the output of ``rabbitmqctl args`` against the node."""
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def queue_refusals(self, user: str) -> list[str]:
        """Return the queues the node logged as refused to ``user``."""
        refused = re.compile(
            rf"access to queue '([^']+)' in vhost '/' refused for user '{re.escape(user)}'"
        )
        return refused.findall(self.log.read_text(errors="replace"))

    async def amqp(self, user: str, operations: list[Operation]) -> list[str]:
        """Return ``ok`` or ``refused <resource kind>`` per operation run as ``user`` over AMQP."""
        terms = ", ".join(
            "{" + ", ".join([name, *(f'<<"{arg}">>' for arg in args)]) + "}"
            for name, *args in operations
        )
        code = AMQP.substitute(
            password_file=self.password_file(user),
            user=user,
            port=self.amqp_port,
            operations=f"[{terms}]",
        )
        answer = await asyncio.to_thread(self.rabbitmqctl, "eval", code)
        return [word.replace("refused_", "refused ") for word in re.findall(r"\w+", answer)]

    def password_file(self, user: str) -> Path:
        """Return the file the script read ``user``'s password from."""
        return self.files / ("pw.consumer" if user == CONSUMER else f"pw.{user}")

    def password(self, user: str) -> str:
        """Return ``user``'s password."""
        return f"pw-{user}"

    def client(
        self, user: str, identifier: str, password: str | None = None, *, clean: bool = True
    ) -> aiomqtt.Client:
        """Return an MQTT 3.1.1 client logged in as ``user``; a durable session unless ``clean``."""
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=user,
            password=self.password(user) if password is None else password,
            protocol=V311,
            identifier=identifier,
            clean_session=clean,
            timeout=10,
        )


@pytest.fixture(scope="module")
def users(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Users:
    """Run config/rabbitmq-acl.sh on the shared node for two hubs of this module."""
    files = tmp_path_factory.mktemp("rabbitmq-acl")
    acl = Users(
        rabbitmq.port,
        rabbitmq.amqp_port,
        files,
        ("acl-hub-1", "acl-hub-2"),
        rabbitmq.workdir / "log" / "node.log",
        {**rabbitmq.env(), "PATH": f"{RABBITMQCTL_DIR}:{os.environ['PATH']}"},
    )
    for user in acl.hubs:
        acl.password_file(user).write_text(acl.password(user) + "\n")
    acl.password_file(CONSUMER).write_text(acl.password(CONSUMER))
    done = acl.script(*acl.hubs)
    assert done.returncode == 0, done.stderr
    return acl


async def test_a_hub_under_the_script_is_served_end_to_end(users: Users, tmp_path: Path) -> None:
    hub_id = users.hubs[0]
    config = hub_config(
        tmp_path,
        users.port,
        hub_id,
        simulator={"devices": 2, "rate_hz": 20.0},
        mqtt={
            "protocol": 4,
            "base_topic": BASE,
            "username": hub_id,
            "password_file": str(users.files / f"pw.{hub_id}"),
        },
    )
    opened: list[OpenedRecord] = []
    async with running_hub(config):
        consumer = Consumer(
            load_recipient_private(tmp_path / "recipient" / "recipient.key"),
            {hub_id: hub_signing_key(config.state_dir).public_key()},
        )
        stats = await consume(
            consumer,
            Broker(port=users.port, username=CONSUMER, password=users.password(CONSUMER)),
            BASE,
            on_record=opened.append,
            count=5,
            seconds=30,
            protocol=4,
            client_id=CONSUMER_ID,
        )
        assert (stats.opened >= 5, stats.rejected) == (True, 0)
        # The consumer's one request: the hub (subscribed to its requests) answers it.
        root = config.topic_root
        async with users.client(CONSUMER, f"{CONSUMER_ID}-request") as client:
            await client.subscribe(f"{root}/response/epoch/resend", qos=1)
            request = {"transaction": "r1", "kid": opened[0].kid.hex()}
            await client.publish(f"{root}/request/epoch/resend", json.dumps(request), qos=1)
            async with asyncio.timeout(15):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    answer = json.loads(message.payload)
                    break
    assert (answer["transaction"], answer["status"]) == ("r1", "ok")


async def test_a_hub_cannot_publish_into_another_hubs_subtree(users: Users) -> None:
    own, other = users.hubs
    record = f"{BASE}/{own}/data/00000000000000ff/telemetry_environment"
    forged = f"{BASE}/{other}/data/00000000000000ff/telemetry_environment"
    async with users.client(CONSUMER, f"{CONSUMER_ID}-watcher") as watcher:
        await watcher.subscribe(f"{BASE}/+/data/#", qos=1)
        async with users.client(own, "acl-own") as hub:
            await hub.publish(record, b"own", qos=1)
        # Refused: the node logs it and drops the connection without a PUBACK.
        with pytest.raises(aiomqtt.MqttError):
            async with users.client(own, "acl-forger") as hub:
                await hub.publish(forged, b"forged", qos=1, timeout=REFUSED_S)
        with pytest.raises(aiomqtt.MqttError):
            async with users.client(CONSUMER, "acl-consumer-forger") as consumer:
                await consumer.publish(record, b"by-the-consumer", qos=1, timeout=REFUSED_S)
        assert await _received(watcher, 1.0) == [(record, b"own")]
    assert _routing_key(forged) in users.refusals(own)
    assert _routing_key(record) in users.refusals(CONSUMER)


async def test_a_hub_cannot_subscribe_to_another_hub(users: Users) -> None:
    own, other = users.hubs
    async with users.client(own, f"consentgate-{own}") as hub:
        granted = await hub.subscribe(f"{BASE}/{own}/request/#", qos=1)
    assert [_code(g) for g in granted] == [1]
    with pytest.raises(aiomqtt.MqttError):
        async with users.client(own, f"consentgate-{own}-control") as hub:
            await hub.subscribe(f"{BASE}/{other}/#", qos=1, timeout=REFUSED_S)
    assert _routing_key(f"{BASE}/{other}/#") in users.refusals(own)


async def test_a_wrong_password_is_refused(users: Users) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with users.client(users.hubs[0], "acl-wrong", password="pw-acl-hub-2"):
            pass


async def test_over_amqp_no_user_reaches_another_hubs_session_queue(users: Users) -> None:
    own, other = users.hubs
    queue = f"mqtt-subscription-consentgate-{other}qos1"  # where the other hub's requests wait
    request = f"{BASE}/{other}/request/epoch/resend"
    async with users.client(other, f"consentgate-{other}") as hub:
        await hub.subscribe(f"{BASE}/{other}/request/#", qos=1)
        for user, readable in (
            (own, f"{BASE}.{own}.request.x"),
            (CONSUMER, f"{BASE}.{other}.status"),
        ):
            forgeries: list[Operation] = [
                ("bind", queue, readable),  # a key the user may read: what comes there, goes in
                ("publish", "", queue),  # the default exchange routes by queue name
                ("consume", queue),  # take the requests
                ("delete", queue),  # drop the session
            ]
            outcomes = await users.amqp(user, forgeries)
            assert outcomes == ["refused queue", "refused exchange", *["refused queue"] * 2]
        # The owner may: the queue is its own (and survived the attempts).
        own_key = f"{BASE}.{other}.request.x"
        assert await users.amqp(other, [("bind", queue, own_key)]) == ["ok"]
        async with users.client(CONSUMER, f"{CONSUMER_ID}-request") as consumer:
            await consumer.publish(request, b"{}", qos=1)
        assert await _received(hub, 1.0) == [(request, b"{}")]


async def test_only_a_users_own_client_ids_may_subscribe(users: Users) -> None:
    own, other = users.hubs
    # Another hub's client id, or a consumer's id outside consentgate-consume-: no subscription.
    for user, identifier in ((own, f"consentgate-{other}"), (CONSUMER, "acl-any-id")):
        with pytest.raises(aiomqtt.MqttError):
            async with users.client(user, identifier) as client:
                await client.subscribe(f"{BASE}/{own}/data/#", qos=1, timeout=REFUSED_S)
        assert f"mqtt-subscription-{identifier}qos1" in users.queue_refusals(user)
    # A client id outside the scheme still publishes: a publish has no session queue.
    async with users.client(own, "acl-any-id") as hub:
        await hub.publish(f"{BASE}/{own}/data/00000000000000ff/telemetry_environment", b"r", qos=1)


async def test_a_hub_cannot_take_over_the_consumers_durable_session(users: Users) -> None:
    own = users.hubs[0]
    durable = f"{CONSUMER_ID}-durable"
    record = f"{BASE}/{own}/data/00000000000000ff/telemetry_environment"
    async with users.client(CONSUMER, durable, clean=False) as consumer:
        await consumer.subscribe(f"{BASE}/+/data/#", qos=1)
    # While the consumer is away its session queue keeps every hub's records.
    async with users.client(own, "acl-own") as hub:
        await hub.publish(record, b"kept", qos=1)
    for clean in (False, True):  # resume the session, or have the node drop it
        with pytest.raises(aiomqtt.MqttError):
            async with users.client(own, durable, clean=clean):
                pass
    async with users.client(CONSUMER, durable, clean=False) as consumer:
        assert await _received(consumer, 1.0) == [(record, b"kept")]
    async with users.client(CONSUMER, durable):  # a clean session: the node drops the queue
        pass


def test_the_script_refuses_a_hub_id_that_shares_client_ids_before_changing_anything(
    users: Users,
) -> None:
    valid = "acl-hub-3"
    users.password_file(valid).write_text(users.password(valid))
    for refused in (f"{users.hubs[0]}-control", "consume-acl", "acl.hub", "x" * 65, ""):
        done = users.script(valid, refused)
        assert (done.returncode, f"hub id '{refused}' refused" in done.stderr) == (2, True)
    assert valid not in users.rabbitmqctl("list_users").split()


def test_the_script_run_again_on_its_node_sets_the_same_permissions(users: Users) -> None:
    before = users.rabbitmqctl("list_permissions")
    done = users.script(*users.hubs)
    assert (done.returncode, users.rabbitmqctl("list_permissions")) == (0, before), done.stderr


async def _received(client: aiomqtt.Client, seconds: float) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append((message.topic.value, message.payload))
    return got


def _routing_key(topic: str) -> str:
    return topic.replace("/", ".").replace("+", "*")


def _code(granted: object) -> int:
    value = getattr(granted, "value", granted)
    assert isinstance(value, int)
    return value
