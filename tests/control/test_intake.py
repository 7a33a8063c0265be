"""The request intake's rules, on a real Router with handlers that wait when told to: the
critical lane never waits behind the normal one, the normal lane is bounded (oldest dropped,
answered busy), clients are rate limited, reply topics inside the hub's tree are refused, and
refusals are audited per client and reason per minute."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from gateway.commands.intake import Intake, Limits, reply_topic_allowed
from gateway.commands.refusals import RefusalAudit
from gateway.commands.router import Router
from gateway.counters import Counters
from gateway.mqtt.link import Request
from gateway.mqtt.topics import Topics

TOPICS = Topics("consentgate/hub1")


class Sent:
    """Answers the intake sent, decoded, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(
        self, topic: str, payload: bytes, correlation: bytes | None, *, qos: int = 1
    ) -> bool:
        self.items.append((topic, json.loads(payload)))
        return True  # queued on a live connection

    def by_transaction(self) -> dict[Any, dict[str, Any]]:
        return {body["transaction"]: body for _, body in self.items}


def make(limits: Limits) -> tuple[Intake, Sent, asyncio.Event, Counters]:
    router = Router()
    gate = asyncio.Event()

    async def slow(params: Mapping[str, Any]) -> Any:
        await gate.wait()
        return {}

    async def fast(params: Mapping[str, Any]) -> Any:
        return {"applied": True}

    router.add("health", slow)
    router.add("consent/set", fast)
    counters = Counters()
    sent = Sent()
    return Intake(router, TOPICS, counters, sent, limits), sent, gate, counters


def request(command: str, transaction: str, reply: str | None = None) -> Request:
    return Request(command, json.dumps({"transaction": transaction}).encode(), reply, None)


async def test_a_withdrawal_is_served_while_the_normal_lane_is_stuck_and_full() -> None:
    intake, sent, gate, counters = make(Limits(queue=4, burst=1000, rate_per_s=1000.0))
    async with asyncio.TaskGroup() as group:
        worker = group.create_task(intake.run())
        intake.offer(request("health", "h0"))
        await asyncio.sleep(0.01)  # h0 runs and waits
        for i in range(1, 10):
            intake.offer(request("health", f"h{i}"))
        intake.offer(request("consent/set", "w"))
        async with asyncio.timeout(2):
            while "w" not in sent.by_transaction():
                await asyncio.sleep(0.001)
        answers = sent.by_transaction()
        assert answers["w"]["status"] == "ok"
        # h0 is running (stuck); of h1..h9 only the newest 4 wait: h1..h5 gave way, busy
        assert [t for t in answers if t != "w"] == ["h1", "h2", "h3", "h4", "h5"]
        assert {answers[t]["error"]["code"] for t in answers if t != "w"} == {"busy"}
        assert counters.get("requests.dropped") == 5
        gate.set()
        async with asyncio.timeout(2):
            while len(sent.by_transaction()) < 11:
                await asyncio.sleep(0.001)
        worker.cancel()
    assert all(
        body["status"] == "ok"
        for t, body in sent.by_transaction().items()
        if t in {"h0", "h6", "h7", "h8", "h9"}
    )


async def test_a_client_over_its_rate_is_answered_busy_on_its_own_topic() -> None:
    intake, sent, gate, counters = make(Limits(burst=3, rate_per_s=0.001))
    gate.set()
    for i in range(5):
        intake.offer(request("health", f"a{i}", reply="clients/a"))
    intake.offer(request("health", "b0", reply="clients/b"))
    busy = [(topic, body["transaction"]) for topic, body in sent.items]
    assert busy == [("clients/a", "a3"), ("clients/a", "a4")]
    assert counters.get("requests.limited") == 2


async def test_a_reply_topic_in_the_hubs_own_tree_is_refused_and_the_request_not_run() -> None:
    intake, sent, _gate, counters = make(Limits())
    intake.offer(request("consent/set", "t1", reply="consentgate/hub1/status"))
    assert sent.items == [
        (
            "consentgate/hub1/response/consent/set",
            {
                "transaction": "t1",
                "status": "error",
                "error": {
                    "code": "invalid_request",
                    "message": sent.items[0][1]["error"]["message"],
                },
            },
        )
    ]
    assert intake.waiting == 0
    assert counters.get("requests.bad_response_topic") == 1


def test_reply_topics_allowed() -> None:
    assert reply_topic_allowed(TOPICS, "clients/phone-1/replies")
    assert reply_topic_allowed(TOPICS, "consentgate/hub10/x")  # another tree, not a prefix
    for bad in ("consentgate/hub1", "consentgate/hub1/status", "a/+/b", "a/#", "$SYS/x", ""):
        assert not reply_topic_allowed(TOPICS, bad), bad


class FakeAudit:
    """Records audit entries (the aggregation rule is what is under test here)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def append(self, event: str, **details: Any) -> int:
        self.entries.append({"event": event, **details})
        return len(self.entries)


async def test_refusals_are_audited_once_per_client_and_reason_per_minute() -> None:
    now = [0.0]
    audit = FakeAudit()
    counters = Counters()
    refusals = RefusalAudit(audit, counters, lambda c: f"p-{c}", clock=lambda: now[0])
    router = Router()
    router.on_refused(refusals.on_refused)
    for _ in range(1000):
        await router.dispatch("nope", b"{}", client="clients/a")
    await router.dispatch("nope", b"{", client="clients/a")
    assert audit.entries == []  # queued: written by the refusal audit's own task
    assert await refusals.flush() == 2
    assert [e["code"] for e in audit.entries] == ["unknown_command", "invalid_json"]
    assert audit.entries[0] == {
        "event": "command.rejected",
        "command": "<unknown>",
        "code": "unknown_command",
        "client": "p-clients/a",
    }
    assert await refusals.flush() == 0  # the minute has not ended
    now[0] = 61.0
    assert await refusals.flush() == 1
    assert audit.entries[-1]["repeated"] == 999
    for _ in range(500):  # still failing: one entry per minute, no entry at once
        await router.dispatch("nope", b"{}", client="clients/a")
    assert len(audit.entries) == 3
    now[0] = 122.0
    assert await refusals.flush() == 1
    assert audit.entries[-1]["repeated"] == 500
    assert counters.get("commands.unknown") == 1501  # the invalid JSON one too
    assert counters.get("commands.refused.unknown_command") == 1500


async def test_a_critical_request_is_run_once_whichever_link_brings_it_first() -> None:
    intake, sent, _gate, counters = make(Limits())
    body = json.dumps({"transaction": "w"}).encode()
    control = Request("consent/set", body, "me/reply", b"c1", control=True)
    main = Request("consent/set", body, "me/reply", b"c1")
    task = asyncio.create_task(intake.run())
    try:
        intake.offer(control)
        intake.offer(main)  # the main link's copy, later: dropped
        intake.offer(main)  # the main link brings a request first: run
        intake.offer(control)  # and the control link's copy of it is dropped
        intake.offer(control)  # the same request sent again on one link: run again
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [body["transaction"] for _, body in sent.items] == ["w", "w", "w"]
    assert counters.get("requests.copies") == 2
    assert counters.get("requests.received") == 3
    assert intake.waiting == 0


async def test_a_withdrawal_is_answered_behind_the_records_and_everything_else_beside_them() -> (
    None
):
    router = Router()

    async def fast(params: Mapping[str, Any]) -> Any:
        return {"applied": True}

    router.add("consent/set", fast)
    router.add("health", fast)
    main, control = Sent(), Sent()
    intake = Intake(router, TOPICS, Counters(), main, Limits(), control_send=control)
    task = asyncio.create_task(intake.run())
    try:
        intake.offer(request("consent/set", "w", "me/reply"))  # critical: the main link
        intake.offer(request("health", "h", "me/reply"))  # run, but changes no record's fate
        intake.offer(Request("nope", b"{", "me/reply", None))  # refused on arrival
        intake.offer(request("health", "own", f"{TOPICS.root}/status"))  # refused on arrival
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [body["transaction"] for _, body in main.items] == ["w"]
    assert sorted(str(body["transaction"]) for _, body in control.items) == ["None", "h", "own"]


async def test_without_a_control_link_every_answer_goes_on_the_main_link() -> None:
    intake, sent, _gate, _counters = make(Limits())
    task = asyncio.create_task(intake.run())
    try:
        intake.offer(request("consent/set", "w", "me/reply"))
        intake.offer(Request("nope", b"{", "me/reply", None))
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(str(body["transaction"]) for _, body in sent.items) == ["None", "w"]


async def test_the_refusal_audit_writes_nothing_while_a_critical_request_runs() -> None:
    audit = FakeAudit()
    quiet = asyncio.Event()  # clear: a critical request waits or runs
    refusals = RefusalAudit(audit, Counters(), lambda c: f"p-{c}", quiet=quiet)
    router = Router()
    router.on_refused(refusals.on_refused)
    await router.dispatch("nope", b"{}", client="clients/a")
    flush = asyncio.create_task(refusals.flush())
    await asyncio.sleep(0.05)
    assert audit.entries == []
    assert not flush.done()
    quiet.set()
    assert await flush == 1
    assert [e["code"] for e in audit.entries] == ["unknown_command"]
