"""Fan-out of one event through the lanes, against the gateway emulator (in process) and a real MongoDB.

A fan-out whose lookup fails raises that error to its caller and leaves nothing half-answered.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.credentials import Credentials
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import PyMongoError

from fanout import attributes
from fanout.envelope import Meta, parse_body
from fanout.gateway.client import ManagementClient, Outcome
from fanout.gateway.http import HttpClient
from fanout.gateway.sigv4 import Signer
from fanout.history import History
from fanout.lifecycle import Lifecycle
from fanout.lifecycle.replays import replay_body
from fanout.local.emulator import Emulator
from fanout.metrics import Metrics
from fanout.publish import build_event
from fanout.store import ConnectionStore, mongo_client
from fanout.tokens import sign
from fanout.worker import replay as replay_module
from fanout.worker.clients import Clients
from fanout.worker.delivery import Deliverer
from fanout.worker.fate import Deliver
from fanout.worker.received import parse
from fanout.worker.replay import replay
from tests.conftest import Server, dev_settings, free_port
from tests.corpus import valid

#: A type outside the catalog: its payload is not checked against a model, so any version goes.
STICKER = "chat.sticker.sent"
NOTE = {"notificationId": "n1"}  # a valid notification.new payload


@dataclass
class Rig:
    """An emulator, the store behind it, and a Deliverer posting to it."""

    emulator: Emulator
    store: ConnectionStore
    deliverer: Deliverer
    domain: str
    ws_url: str
    key: str
    #: every client socket a test opened: one no longer referenced is closed by the garbage collector
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)


@pytest.fixture
async def rig(mongo_server: Server) -> AsyncIterator[Rig]:
    settings = dev_settings(mongo=mongo_server)
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    await store.ensure_indexes()
    port = free_port()
    domain = f"127.0.0.1:{port}"
    emulator = Emulator(Lifecycle(store, settings), "local", domain)
    runner = web.AppRunner(emulator.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = HttpClient(timeout_s=2)
    management = ManagementClient(
        http, Signer(Credentials("k", "s"), "us-east-1"), region="us-east-1", dev=True
    )
    deliverer = Deliverer(store, management, Metrics(CollectorRegistry()), max_posts_in_flight=4, attempts=3)
    yield Rig(emulator, store, deliverer, domain, f"ws://{domain}/local", settings.jwt_key())
    await deliverer.close()
    await http.close()
    for sock in list(emulator.sockets.values()):
        await sock.ws.close()
    await runner.cleanup()
    await client.drop_database(settings.mongo_db)
    await client.close()


async def _clients(
    rig: Rig, http: aiohttp.ClientSession, user: str, n: int
) -> list[aiohttp.ClientWebSocketResponse]:
    out = []
    for _ in range(n):
        ws = await http.ws_connect(rig.ws_url, params={"token": sign(user, rig.key)})
        out.append(ws)
    rig.sockets += out  # open until the test ends, whether it holds them or not
    return out


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return dict(json.loads(await ws.receive_str(timeout=5)))


async def test_every_connection_of_the_user_gets_the_frame_once(rig: Rig) -> None:
    """Each open connection of a target user gets the event's frame; the result counts them as ok."""
    body = build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n1", "n": 1})
    async with aiohttp.ClientSession() as http:
        sockets = await _clients(rig, http, "u1", 3)
        result = await rig.deliverer.deliver(body, time.monotonic() + 10)
        frames = [await _frame(ws) for ws in sockets]
    assert (3, "delivered") == (result.outcomes[Outcome.OK], result.event_outcome())
    assert {body.id} == {f["id"] for f in frames}


async def test_gone_connections_are_pruned_but_young_ones_go_to_a_later_round(rig: Rig) -> None:
    """A 410 for an old record prunes it; for a record younger than the connect grace it is a failure
    to retry in a later round, and the record stays."""
    now = datetime.now(UTC)
    await rig.store._col.insert_many(
        [
            {"connectionId": cid, "userId": "u2", "domainName": rig.domain, "stage": "local",
             "connectedAt": connected, "expiresAt": now + timedelta(minutes=5)}
            for cid, connected in (("old", now - timedelta(minutes=1)), ("young", now))
        ]
    )  # fmt: skip
    result = await rig.deliverer.deliver(
        build_event("notification.new", user_ids=["u2"], payload=NOTE), time.monotonic() + 10
    )
    assert ["young"] == result.failed
    assert {"young": "u2"} == result.users
    assert await rig.store.get("old") is None
    assert await rig.store.get("young") is not None


async def test_server_errors_are_retried_then_reported_as_failed(rig: Rig) -> None:
    """Posts answered 500 are retried up to the attempts, then listed for a later round."""
    async with aiohttp.ClientSession() as http:
        await _clients(rig, http, "u3", 2)
        rig.emulator.faults.update({"error": 1.0})
        result = await rig.deliverer.deliver(
            build_event("notification.new", user_ids=["u3"], payload=NOTE), time.monotonic() + 10
        )
    assert 2 == len(result.failed)
    assert 4 == result.retries  # two connections, three attempts each
    assert 6 == result.attempts[Outcome.SERVER_ERROR]


async def test_a_wrong_stage_is_refused_and_not_retried(rig: Rig) -> None:
    """A 403 (a record naming the wrong stage) is listed as refused after one attempt."""
    await rig.store.put("wrong", "u4", rig.domain, "prod", ttl_s=60)
    result = await rig.deliverer.deliver(
        build_event("notification.new", user_ids=["u4"], payload=NOTE), time.monotonic() + 10
    )
    assert (["wrong"], 1) == (result.refused, result.attempts[Outcome.FORBIDDEN])


async def test_nothing_is_posted_once_the_event_expired(rig: Rig) -> None:
    """Posts that would start after the event's expiry are not made; the event counts as expired."""
    async with aiohttp.ClientSession() as http:
        sockets = await _clients(rig, http, "u5", 2)
        body = build_event("notification.new", user_ids=["u5"], payload=NOTE)
        result = await rig.deliverer.deliver(body, time.monotonic() + 10, expires_at=time.time() - 1)
        with pytest.raises(asyncio.TimeoutError):
            await sockets[0].receive_str(timeout=0.5)
    assert (2, "expired") == (result.outcomes[Outcome.EXPIRED], result.event_outcome())
    assert 0 == rig.emulator.counts.get("delivered", 0)


async def test_no_retry_starts_after_the_event_expired(rig: Rig) -> None:
    """A post that fails after the event's expiry (a typing indicator of 5 s, say) is not retried: the
    connection ends as expired after its one attempt, however much of the retry budget is left."""
    async with aiohttp.ClientSession() as http:
        await _clients(rig, http, "u6", 1)
        # The post starts before the expiry (the lookup has 0.6 s) and its answer comes after it.
        rig.emulator.faults.update({"error": 1.0, "latency_ms": 1000})
        body = build_event("notification.new", user_ids=["u6"], payload=NOTE)
        result = await rig.deliverer.deliver(body, time.monotonic() + 10, expires_at=time.time() + 0.6)
    assert (1, 0, "expired") == (
        result.attempts[Outcome.SERVER_ERROR],
        result.retries,
        result.event_outcome(),
    )
    assert ([], 1) == (result.failed, result.outcomes[Outcome.EXPIRED])


async def test_a_conflated_value_is_not_retried_once_a_newer_one_was_claimed(rig: Rig) -> None:
    """A live counter's post answered 429 asks its claim before each retry, never before the first
    attempt: once a newer value was claimed, no retry is made, nothing fails, and the event whose
    connections all went that way is ``conflated``."""
    asked: list[int] = []

    async def claim() -> bool:  # a newer value was claimed from the second retry on
        asked.append(rig.emulator.counts.get("throttled", 0))
        return len(asked) >= 2

    async with aiohttp.ClientSession() as http:
        await _clients(rig, http, "u7", 2)
        rig.emulator.faults.update({"throttle": 1.0})
        body = build_event(
            "event.attendance.updated", user_ids=["u7"], payload={"eventId": "42", "checkedInCount": 3}
        )
        result = await rig.deliverer.deliver(body, time.monotonic() + 10, claim=claim)
    assert asked and min(asked) >= 1  # asked only once a first attempt had been answered
    assert ([], 2, 0, "conflated") == (
        result.failed,
        result.conflated,
        result.outcomes[Outcome.THROTTLED],
        result.event_outcome(),
    )
    assert (2, len(asked) - 2) == (result.attempted, result.retries)  # two asks answered "retry"


async def test_an_outage_stays_an_outage_when_a_conflated_value_skips_some_retries(rig: Rig) -> None:
    """A live counter's posts all refused at the socket are an outage though a newer value, claimed
    meanwhile, spared some of them their retries: those were refused too (before, they would have been
    retried and refused again). One connection runs out of attempts (failed), the other is conflated."""
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: every post is refused at the socket
    for i in range(2):
        await rig.store.put(f"cdown{i}", "u12", dead, "local", ttl_s=60)
    asked: list[bool] = []

    async def claim() -> bool:  # the first ask retries (its last attempt), the second is superseded
        asked.append(True)
        return len(asked) >= 2

    rig.deliverer._lanes._attempts = 2  # the first asker's retry is its last attempt
    body = build_event(
        "event.attendance.updated", user_ids=["u12"], payload={"eventId": "43", "checkedInCount": 5}
    )
    result = await rig.deliverer.deliver(body, time.monotonic() + 10, claim=claim)
    assert (1, 1, 1) == (len(result.failed), result.conflated, result.outcomes[Outcome.UNREACHABLE])
    assert result.endpoint_down()


async def _maybe(ws: aiohttp.ClientWebSocketResponse) -> str | None:
    try:
        return str(json.loads(await ws.receive_str(timeout=1))["id"])
    except TimeoutError:
        return None


async def test_a_remainder_round_reaches_only_listed_connections_of_the_target(rig: Rig) -> None:
    """With a connection list, only listed connections that the target addresses get the frame: a listed
    connection of another user gets nothing."""
    async with aiohttp.ClientSession() as http:
        mine = await _clients(rig, http, "u6", 2)
        theirs = await _clients(rig, http, "intruder", 1)
        records = await rig.store._col.find({}, {"connectionId": 1, "userId": 1}).to_list(None)
        by_user: dict[str, list[str]] = {}
        for r in records:
            by_user.setdefault(r["userId"], []).append(r["connectionId"])
        body = build_event("notification.new", user_ids=["u6"], payload=NOTE)
        only = (by_user["u6"][0], by_user["intruder"][0])
        result = await rig.deliverer.deliver(body, time.monotonic() + 10, only=only)
        got = await asyncio.gather(*(_maybe(ws) for ws in (*mine, *theirs)))
    assert 1 == result.outcomes[Outcome.OK]
    assert [body.id] == [g for g in got[:2] if g]
    assert got[2] is None


async def test_a_failed_lookup_raises_and_leaves_no_unretrieved_future(closed_port: int) -> None:
    """MongoDB refusing connections: deliver() raises the lookup's error, and asyncio reports no future
    whose error nobody read (each such report is an error-level log line during an outage)."""
    reports: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reports.append(context))
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{closed_port}", serverSelectionTimeoutMS=200, timeoutMS=300
    )
    http = HttpClient(timeout_s=1)
    deliverer = Deliverer(
        ConnectionStore.from_client(mongo, "fanout", "websocketconnections"),
        ManagementClient(http, None, region="us-east-1", dev=True),
        Metrics(CollectorRegistry()),
        max_posts_in_flight=2,
        attempts=1,
    )
    try:
        with pytest.raises(PyMongoError):
            await deliverer.deliver(parse_body(json.dumps(valid())), time.monotonic() + 5)
    finally:
        await deliverer.close()
        await http.close()
        await mongo.close()
    gc.collect()
    await asyncio.sleep(0)
    assert [] == [r["message"] for r in reports if "never retrieved" in r.get("message", "")]


async def _hello(ws: aiohttp.ClientWebSocketResponse, **fields: Any) -> dict[str, Any]:
    await ws.send_json({"action": "hello", "protocols": [1], **fields})
    answer = await _frame(ws)
    assert "system.connected" == answer["type"]
    return answer


async def _frames(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.5) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(json.loads(await ws.receive_str(timeout=wait)))
        except TimeoutError:
            return out


async def test_a_payload_version_a_connection_does_not_speak_is_not_posted_and_it_is_asked_once(
    rig: Rig,
) -> None:
    """A version-2 event reaches only the connection that declared version 2; the one that declared only 1
    and the one that never said hello (version 1 of everything) get system.reconnect instead, once per
    connection for that type and version however many such events follow."""
    async with aiohttp.ClientSession() as http:
        both, only_v1, silent = await _clients(rig, http, "u7", 3)
        await _hello(both, payloads={STICKER: [1, 2]})
        await _hello(only_v1, payloads={STICKER: [1]})
        first = build_event(STICKER, user_ids=["u7"], payload={"n": 1}, meta={"payloadVersion": 2})
        result = await rig.deliverer.deliver(first, time.monotonic() + 10)
        second = build_event(STICKER, user_ids=["u7"], payload={"n": 2}, meta={"payloadVersion": 2})
        again = await rig.deliverer.deliver(second, time.monotonic() + 10)
        got = {name: await _frames(ws) for name, ws in (("both", both), ("v1", only_v1), ("silent", silent))}
    assert [(first.id, 2), (second.id, 2)] == [(f["id"], f["payloadVersion"]) for f in got["both"]]
    for name in ("v1", "silent"):
        [ask] = got[name]
        assert "system.reconnect" == ask["type"]
        assert {"reason": "upgrade", "eventType": STICKER, "payloadVersion": 2} == ask["payload"]
    assert (1, 2, "delivered") == (
        result.outcomes[Outcome.OK],
        result.outcomes[Outcome.UNSUPPORTED_VERSION],
        result.event_outcome(),
    )
    assert (1, 2) == (again.outcomes[Outcome.OK], again.outcomes[Outcome.UNSUPPORTED_VERSION])
    deliveries = rig.deliverer._metrics.deliveries
    assert 4 == deliveries.labels("other", "unsupported_version")._value.get()
    assert 2 == deliveries.labels("system.reconnect", "ok")._value.get()


async def test_a_type_left_out_of_a_declaration_is_version_1(rig: Rig) -> None:
    """A connection declaring only chat.message [2] gets no version-1 chat.message, but version 1 of every
    type it did not name, as a client without hello does."""
    async with aiohttp.ClientSession() as http:
        [ws] = await _clients(rig, http, "u8", 1)
        await _hello(ws, payloads={STICKER: [2]})
        chat = build_event(STICKER, user_ids=["u8"], payload={})
        note = build_event("notification.new", user_ids=["u8"], payload=NOTE)
        chat_result = await rig.deliverer.deliver(chat, time.monotonic() + 10)
        note_result = await rig.deliverer.deliver(note, time.monotonic() + 10)
        frames = await _frames(ws)
    assert (0, 1) == (chat_result.outcomes[Outcome.OK], chat_result.outcomes[Outcome.UNSUPPORTED_VERSION])
    assert 1 == note_result.outcomes[Outcome.OK]
    assert ["system.reconnect", "notification.new"] == sorted((f["type"] for f in frames), reverse=True)
    assert all("payloadVersion" not in f for f in frames if f["type"] == "notification.new")


async def test_only_connections_that_asked_are_looked_at_for_versions(rig: Rig) -> None:
    """Records without declared versions carry no payloads field into the worker, so a version-1 event to
    them takes no version check: every one is posted."""
    async with aiohttp.ClientSession() as http:
        sockets = await _clients(rig, http, "u9", 3)
        conns = [c async for batch in rig.store.resolve(build_event("notification.new", user_ids=["u9"], payload=NOTE).target)
                 for c in batch]  # fmt: skip
        result = await rig.deliverer.deliver(build_event(STICKER, user_ids=["u9"]), time.monotonic() + 10)
        await asyncio.gather(*(_frames(ws, 0.2) for ws in sockets))
    assert [None, None, None] == [c.payloads for c in conns]
    assert 3 == result.outcomes[Outcome.OK]


def _replay_message(connection_id: str, event_ids: list[str]) -> Any:
    """A replay of ``event_ids`` to one connection, its body expiring in years (as a forged one can)."""
    body = replay_body(connection_id).model_copy(update={"meta": Meta(expires_at=datetime(2099, 1, 1, tzinfo=UTC))})  # fmt: skip
    return parse(
        {
            "ReceiptHandle": "r",
            "MessageId": "m",
            "Body": body.to_json(),
            "MessageAttributes": attributes.replay(event_ids),
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        }
    )


async def _kept(history: History, user: str, count: int) -> list[str]:
    await history.ensure_indexes()
    bodies = [build_event("notification.new", user_ids=[user], payload={"notificationId": f"n{i}"}) for i in range(count)]  # fmt: skip
    for body in bodies:
        await history.record(body, time.time() + 600)
    return [b.id for b in bodies]


async def test_a_replay_stops_posting_at_its_time_budget(rig: Rig, mongo_server: Server) -> None:
    """A replay naming many kept events, against an endpoint slow to answer, stops at its budget (its
    body's expiry bounds a real one; anyone who can send to the queue can forge one expiring in years):
    the frames it posted arrive in order, the rest waits for the client's next resume, and the worker's
    slot is not held for the whole list."""
    history = History(rig.store._col.database, dev_settings(mongo=mongo_server))
    ids = await _kept(history, "r1", 40)
    async with aiohttp.ClientSession() as http:
        [ws] = await _clients(rig, http, "r1", 1)
        [record] = await rig.store._col.find({"userId": "r1"}).to_list()
        rig.emulator.faults.update({"latency_ms": 100})
        clients = Clients(None, None, None, rig.store, None, history)  # type: ignore[arg-type]
        msg = _replay_message(record["connectionId"], ids)
        decided = await replay(msg, clients, rig.deliverer, Deliver(1.0, time.time() + 3600), max_receives=5)
        got = [(await _frame(ws))["id"] for _ in range(rig.emulator.counts.get("delivered", 0))]
    assert 0 < len(got) < len(ids)  # 40 posts of 100 ms each take 4 s
    assert ids[: len(got)] == got
    assert decided.delete


class FrameFinds(monitoring.CommandListener):
    """The number of event ids in every ``find`` of kept frames a client sends."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and "$in" in event.command["filter"].get("_id", {}):
            self.sizes.append(len(event.command["filter"]["_id"]["$in"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_replay_loads_its_kept_frames_a_chunk_at_a_time(
    rig: Rig, mongo_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay reads the frames it posts ``FRAMES_AT_ONCE`` ids at a time: one naming 5,000 kept events
    of up to 128 KiB each loaded them all at once (hundreds of MB for one forged message). Every kept
    event still arrives, in the listed order, across the chunks; ids nothing was kept for are skipped."""
    monkeypatch.setattr(replay_module, "FRAMES_AT_ONCE", 3)
    finds = FrameFinds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_server.url, tz_aware=True, event_listeners=[finds]
    )
    history = History(client[rig.store._col.database.name], dev_settings(mongo=mongo_server))
    ids = await _kept(history, "r2", 7)
    listed = [*ids[:2], "evt_none_1", *ids[2:], "evt_none_2"]
    try:
        async with aiohttp.ClientSession() as http:
            [ws] = await _clients(rig, http, "r2", 1)
            [record] = await rig.store._col.find({"userId": "r2"}).to_list()
            clients = Clients(None, None, None, rig.store, None, history)  # type: ignore[arg-type]
            msg = _replay_message(record["connectionId"], listed)
            decided = await replay(
                msg, clients, rig.deliverer, Deliver(30.0, time.time() + 3600), max_receives=5
            )
            got = [(await _frame(ws))["id"] for _ in ids]
    finally:
        await client.close()
    assert ids == got
    assert [3, 3, 3] == finds.sizes
    assert decided.delete


async def test_a_410_for_a_record_without_connected_at_never_prunes_the_id_reconnected_meanwhile(
    rig: Rig,
) -> None:
    """A record read without connectedAt answered 410 while its id reconnected: the new record stays."""
    await rig.store._col.insert_one(
        {"connectionId": "reused", "userId": "u9", "domainName": rig.domain, "stage": "local",
         "expiresAt": datetime.now(UTC) + timedelta(minutes=5)}
    )  # fmt: skip
    rig.emulator.faults.update(
        {"latency_ms": 500}
    )  # the post is in flight while $connect replaces the record
    body = build_event("notification.new", user_ids=["u9"], payload=NOTE)
    posting = asyncio.create_task(rig.deliverer.deliver(body, time.monotonic() + 10))
    await asyncio.sleep(0.2)
    await rig.store.put("reused", "u9", rig.domain, "local", ttl_s=60)
    result = await posting
    assert 1 == result.outcomes[Outcome.GONE]
    assert await rig.store.get("reused") is not None


async def test_no_post_starts_after_the_deadline_and_those_left_go_to_a_later_round(rig: Rig) -> None:
    """Posts still queued at the event's deadline are not made but listed for a later round, so the
    fan-out ends near its deadline (the worker's bound on it assumes so) rather than after every post."""
    async with aiohttp.ClientSession() as http:
        await _clients(rig, http, "u10", 12)
        rig.emulator.faults.update({"latency_ms": 400})  # three fast lanes: twelve posts take 1.6 s
        body = build_event("notification.new", user_ids=["u10"], payload=NOTE)
        started = time.monotonic()
        result = await rig.deliverer.deliver(body, started + 0.5)
        took = time.monotonic() - started
    assert took < 1.3
    assert 12 == result.outcomes[Outcome.OK] + len(result.failed)
    assert result.failed and rig.emulator.counts.get("delivered", 0) == result.outcomes[Outcome.OK]


async def test_an_outage_stays_an_outage_when_the_deadline_leaves_posts_unmade(rig: Rig) -> None:
    """Connections left unposted at the deadline of a fan-out whose every post was refused at the socket
    do not hide the outage (its remainder keeps its round rather than running out of rounds)."""
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: every post is refused at the socket
    for i in range(60):
        await rig.store.put(f"down{i}", "u11", dead, "local", ttl_s=60)
    body = build_event("notification.new", user_ids=["u11"], payload=NOTE)
    # 1 s: the lookup of the 60 records must leave time for a first post; 60 posts with their retries'
    # backoffs take about 3 s in three lanes
    result = await rig.deliverer.deliver(body, time.monotonic() + 1.0)
    assert 0 < result.outcomes[Outcome.UNREACHABLE] < 60 == len(result.failed)  # some never posted
    assert result.endpoint_down()
