"""The clients on a real stack: clients/browser/fanout.js (run by Node through fanout_js_driver.mjs) and
the reference client fanout.client, each following docs/client.md against the real gateway, lifecycle
and worker."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout import AsyncPublisher
from fanout.client import Backoff, FanoutClient, Resync, token_url
from fanout.config import Settings
from fanout.tokens import sign
from tests.catalog_examples import payload
from tests.conftest import Stack
from tests.helpers import connect, wait_for

DRIVER = Path(__file__).with_name("fanout_js_driver.mjs")


class Reachable(Protocol):
    """A server a client connects to: a stack, or an emulator in the test's own process."""

    @property
    def settings(self) -> Settings: ...

    @property
    def ws_url(self) -> str: ...


class Driver:
    """A fanout.js client in a Node process; ``lines`` holds what it reported, in order."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(json.loads(raw))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["kind"] == kind]

    async def do(self, command: str, **fields: Any) -> None:
        """Have the client do ``command`` (close, start, subscribe with ``topics``, and a filter that
        throws with ``throws``), in the order asked."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"do": command, **fields}).encode() + b"\n")
        await self.process.stdin.drain()

    def connection_id(self) -> str | None:
        opened = [s for s in self.of("status") if s["status"] == "open"]
        return opened[-1]["connectionId"] if opened else None


@asynccontextmanager
async def fanout_js(
    stack: Reachable, user: str, *, opened: bool = True, **settings: Any
) -> AsyncIterator[Driver]:
    """A running fanout.js client of ``user``, open (``hello`` answered) when this yields, or at once
    when not ``opened``."""
    assert shutil.which("node"), "node is required to test clients/browser (install Node.js 20 or later)"
    config = {"url": stack.ws_url, "token": sign(user, stack.settings.jwt_key()), **settings}
    process = await asyncio.create_subprocess_exec(
        "node", "--experimental-websocket", "--no-warnings", str(DRIVER),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "FANOUT_DRIVER": json.dumps(config)},
    )  # fmt: skip
    driver = Driver(process)
    try:
        if opened:
            await wait_for(lambda: driver.connection_id() is not None)
        yield driver
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def mongo(stack: Stack) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    yield client
    await client.close()


async def _forget(mongo: AsyncMongoClient[dict[str, Any]], stack: Stack, connection_id: str) -> None:
    """Delete a connection's record, as a prune or its expiry does, while its socket stays open."""
    s = stack.settings
    deleted = await mongo[s.mongo_db][s.connections_collection].delete_one({"connectionId": connection_id})
    assert 1 == deleted.deleted_count


async def test_fanout_js_reconnects_when_a_ping_is_answered_unknown_connection(
    stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A fanout.js client whose connection record is gone (its pings answered system.error
    unknown_connection) reconnects, as protocol section 8 says, and gets the events published after."""
    user = f"cj-{secrets.token_hex(4)}"
    async with (
        fanout_js(stack, user, options={"heartbeatS": 0.2, "backoffBaseMs": 50}) as client,
        AsyncPublisher(stack.settings) as pub,
    ):
        first = client.connection_id()
        assert first is not None
        await _forget(mongo, stack, first)
        await wait_for(lambda: client.connection_id() not in (None, first), timeout=5)
        event_id = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: [event_id] == [e["id"] for e in client.of("event")])


async def test_the_reference_client_reconnects_when_a_ping_is_answered_unknown_connection(
    stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """fanout.client whose connection record is gone (its pings answered system.error
    unknown_connection) reconnects and gets the events published after."""
    user = f"cp-{secrets.token_hex(4)}"
    url = token_url(stack.ws_url, lambda: sign(user, stack.settings.jwt_key()))
    client = FanoutClient(url, heartbeat_s=0.2, backoff=Backoff(0.05, 0.5))
    async with client, AsyncPublisher(stack.settings) as pub:
        sub = await client.subscribe(types=["notification"])
        await asyncio.wait_for(client.connected.wait(), 10)
        first = client.connection_id
        assert first is not None
        await _forget(mongo, stack, first)
        await wait_for(lambda: client.connected.is_set() and client.connection_id != first, timeout=5)
        event_id = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        got = await asyncio.wait_for(sub.get(), 10)
        assert event_id == got["id"]


async def test_fanout_js_hands_on_a_live_counter_whose_seq_skipped_at_once(stack: Stack) -> None:
    """A live counter's seq skips the values conflation dropped (protocol section 19): fanout.js hands on
    its newer value at once, as docs/client.md says, instead of holding it back as a gap."""
    user, topic = f"cc-{secrets.token_hex(4)}", f"event:{secrets.token_hex(4)}"
    body = payload("event.rsvp.updated")
    hold = {"holdMs": 60_000, "replayWaitMs": 60_000}  # a held counter would wait past the test's bound
    async with (
        fanout_js(stack, user, options=hold, topics=[topic]) as client,
        AsyncPublisher(stack.settings) as pub,
    ):
        # Seq 4 only once seq 1 arrived: a standard queue keeps no order, and a counter takes no per-key
        # turn in the worker, so 4 could go first and 1, older, be dropped (conflated, or by the client).
        sent: list[str] = []
        for seq in (1, 4):
            event_id = await pub.publish(
                "event.rsvp.updated", payload=body, topics=[topic], ordering_key=topic, seq=seq
            )
            sent.append(event_id)
            await wait_for(lambda: sent == [e["id"] for e in client.of("event")], timeout=10)
        assert [1, 4] == [e["seq"] for e in client.of("event")]
        assert [] == client.of("resync")


async def test_a_resume_naming_the_tabs_earlier_connection_replays_no_echo_of_its_own_change(
    stack: Stack,
) -> None:
    """An event that excluded a tab's connection (its own change) is not replayed to that tab when it
    resumes on a new connection naming the earlier one (protocol section 21, connectionIds), while the
    user's events it missed are; the tab's other connection got the change live."""
    s = stack.settings
    user = f"ce-{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http, AsyncPublisher(s) as pub:
        tab, other = (
            await connect(es, http, stack.ws_url, s, user),
            await connect(es, http, stack.ws_url, s, user),
        )
        await tab.ws.send_json({"action": "hello", "id": "h1"})
        await wait_for(lambda: any(f.get("replyTo") == "h1" for f in tab.frames))
        earlier = next(f for f in tab.frames if f.get("replyTo") == "h1")["payload"]["connectionId"]
        seen = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: [seen] == [e["id"] for e in tab.events()])
        own = await pub.publish(
            "notification.read", payload=payload("notification.read"), user_ids=[user],
            exclude_connection_ids=[earlier],
        )  # fmt: skip
        await wait_for(lambda: own in [e["id"] for e in other.events()])
        await tab.close()
        missed = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: missed in [e["id"] for e in other.events()])

        again = await connect(es, http, stack.ws_url, s, user)
        await again.ws.send_json(
            {"action": "resume", "id": "r1", "lastEventId": seen, "connectionIds": [earlier]}
        )
        await wait_for(lambda: any(f.get("replyTo") == "r1" for f in again.frames))
        answer = next(f for f in again.frames if f.get("replyTo") == "r1")
        assert ("resume.ok", 2) == (answer["type"], answer["payload"]["replaying"])  # seen (overlap), missed
        await wait_for(lambda: missed in [e["id"] for e in again.events()])
        await asyncio.sleep(0.3)
        assert [seen, missed] == [e["id"] for e in again.events()]


async def test_fanout_js_resumes_without_the_echo_of_its_own_change(
    stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """fanout.js names its earlier connection ids when it resumes on a new connection, so an event that
    excluded its earlier connection (the tab's own change) is not replayed to it."""
    user = f"cn-{secrets.token_hex(4)}"
    s = stack.settings
    history = mongo[s.mongo_db][s.history_collection]
    async with (
        fanout_js(stack, user, options={"heartbeatS": 0.2, "backoffBaseMs": 50}) as client,
        AsyncPublisher(s) as pub,
    ):
        first = client.connection_id()
        assert first is not None
        seen = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: [seen] == [e["id"] for e in client.of("event")])
        own = await pub.publish(
            "notification.read", payload=payload("notification.read"), user_ids=[user],
            exclude_connection_ids=[first],
        )  # fmt: skip
        await wait_for(lambda: _kept(history, own))
        await _forget(mongo, stack, first)  # the tab reconnects (unknown_connection) and resumes
        await wait_for(lambda: client.connection_id() not in (None, first), timeout=5)
        after = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: after in [e["id"] for e in client.of("event")])
        await asyncio.sleep(0.5)
        assert [seen, after] == [e["id"] for e in client.of("event")]


async def _kept(history: Any, event_id: str) -> bool:
    return await history.count_documents({"_id": event_id}) == 1


async def _records(mongo: AsyncMongoClient[dict[str, Any]], stack: Stack, user: str) -> int:
    s = stack.settings
    return await mongo[s.mongo_db][s.connections_collection].count_documents({"userId": user})


async def test_fanout_js_closed_while_it_builds_the_url_opens_no_socket(
    stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """close() while the connect URL is being built (a ticket fetched from the app's API) stops the client
    there: no socket opens once the URL is ready, and the client stays closed."""
    user = f"cu-{secrets.token_hex(4)}"
    async with fanout_js(stack, user, opened=False, urlDelayMs=1000) as client:
        await client.do("close")
        await wait_for(lambda: bool(client.of("done")))
        await asyncio.sleep(2)
        assert 0 == await _records(mongo, stack, user)
        assert ["connecting", "closed"] == [s["status"] for s in client.of("status")]


async def test_fanout_js_closed_and_started_again_while_it_builds_the_url_holds_one_socket(
    stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """close() then start() while the connect URL is being built (a React effect run twice, under Strict
    Mode) leaves one connection, not two sockets of the same tab."""
    user = f"cs-{secrets.token_hex(4)}"
    async with fanout_js(stack, user, opened=False, urlDelayMs=1000) as client:
        await client.do("close")
        await client.do("start")
        await wait_for(lambda: client.connection_id() is not None, timeout=10)
        await asyncio.sleep(1.5)
        assert 1 == await _records(mongo, stack, user)
        assert 1 == len([s for s in client.of("status") if s["status"] == "open"])


async def test_fanout_js_asked_to_upgrade_hands_the_ask_on_and_keeps_its_connection(stack: Stack) -> None:
    """A system.reconnect with reason upgrade (an event of a payload version this tab does not speak,
    protocol section 12) reaches the app, which loads a newer build when convenient; fanout.js does not
    reconnect for it: the same hello would be asked again by the next such event, a reconnect per event."""
    user, kind = f"cv-{secrets.token_hex(4)}", "chat.sticker.sent"
    async with (
        fanout_js(stack, user, options={"backoffBaseMs": 50}) as client,
        AsyncPublisher(stack.settings) as pub,
    ):
        first = client.connection_id()
        for _ in range(3):
            await pub.publish(kind, payload={"stickerId": "s1"}, user_ids=[user], meta={"payloadVersion": 2})
            await asyncio.sleep(0.5)
        marker = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: marker in [e["id"] for e in client.of("event")], timeout=10)
        assert "system.reconnect" in [e["type"] for e in client.of("event")]
        assert [first] == [s["connectionId"] for s in client.of("status") if s["status"] == "open"]


async def test_fanout_js_resumes_after_an_upgrade_ask_without_a_resync(stack: Stack) -> None:
    """An upgrade ask is posted by the worker, never kept in the history: taken as the last event, its id
    made the next resume a resync (events: true), so every tab refetched everything after a deploy."""
    user, s = f"cu-{secrets.token_hex(4)}", stack.settings
    async with (
        fanout_js(stack, user, options={"backoffBaseMs": 50}) as client,
        AsyncPublisher(s) as pub,
        aiohttp.ClientSession() as http,
    ):
        first = client.connection_id()
        seen = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: bool(client.of("event")))  # a standard queue keeps no order: ask after it
        await pub.publish("chat.sticker.sent", payload={"stickerId": "s1"}, user_ids=[user], meta={"payloadVersion": 2})  # fmt: skip
        await wait_for(
            lambda: ["notification.new", "system.reconnect"] == [e["type"] for e in client.of("event")]
        )
        assert seen == client.of("event")[0]["id"]
        await _drop_then_resume_without_resync(stack, http, pub, client, user, first)


async def test_fanout_js_reconnects_when_asked_with_a_long_reason_in_any_script(stack: Stack) -> None:
    """A system.reconnect whose reason (a catalog Name, up to 256 characters) takes more than the 123
    bytes a close frame's reason may carry in UTF-8 still closes the socket, and the client reconnects."""
    user = f"cl-{secrets.token_hex(4)}"
    async with (
        fanout_js(stack, user, options={"backoffBaseMs": 50}) as client,
        AsyncPublisher(stack.settings) as pub,
    ):
        first = client.connection_id()
        reason = "メンテナンスのため再接続します" * 4  # 60 characters, 180 bytes
        await pub.publish("system.reconnect", payload={"reason": reason, "afterMs": 0}, user_ids=[user])
        await wait_for(lambda: client.connection_id() not in (None, first), timeout=10)


async def test_fanout_js_hands_each_event_on_though_a_subscribers_filter_throws(stack: Stack) -> None:
    """A subscriber's filter that throws (an app's predicate meeting a payload it did not expect) is
    reported like a callback that throws: the other subscribers still get that event, and the events
    it released from behind a gap are all handed on, none lost."""
    user = f"cf-{secrets.token_hex(4)}"
    key = f"user:{user}"
    hold = {"holdMs": 60_000, "replayWaitMs": 60_000}
    async with (
        fanout_js(stack, user, options=hold, positions={key: 0}) as client,
        AsyncPublisher(stack.settings) as pub,
    ):
        await client.do("subscribe", throws=True)
        await wait_for(lambda: bool(client.of("done")))
        body = payload("notification.new")
        sent = {seq: "" for seq in (1, 2, 3)}
        for seq in (2, 3, 1):  # 2 and 3 wait behind the gap; 1 releases all three at once
            sent[seq] = await pub.publish(
                "notification.new", payload=body, user_ids=[user], ordering_key=key, seq=seq
            )
            await asyncio.sleep(0.5)
        await wait_for(lambda: len(client.of("event")) == 3, timeout=10)
        assert list(sent.values()) == [e["id"] for e in client.of("event")]
        assert client.of("uncaught")


#: What API Gateway's management API asks of a caller (the emulator checks its form).
SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/20260217/us-east-1/execute-api/aws4_request"}


@pytest.mark.parametrize("seq", [-1, 2**53])
async def test_fanout_js_takes_no_position_from_a_seq_a_resume_would_be_refused(
    stack: Stack, seq: int
) -> None:
    """A frame whose seq is not a whole number from 0 to 2^53-1 (protocol section 7; a buggy producer
    posting to the connection) is handed on without ordering: taken as the key's position, it made every
    later resume bad_resume, so each reconnect refetched everything instead of replaying what it missed."""
    user = f"cq-{secrets.token_hex(4)}"
    s = stack.settings
    async with (
        fanout_js(stack, user, options={"backoffBaseMs": 50}) as client,
        AsyncPublisher(s) as pub,
        aiohttp.ClientSession() as http,
    ):
        first = client.connection_id()
        url = f"{stack.gateway_url}/{s.gateway_stage}/@connections/{first}"
        frame = {"v": 1, "id": "evt_odd", "type": "notification.new", "key": f"user:{user}", "seq": seq,
                 "payload": payload("notification.new"), "sentAt": "2026-12-01T00:00:00Z"}  # fmt: skip
        async with http.post(url, data=json.dumps(frame).encode(), headers=SIGNED) as r:
            assert 200 == r.status
        seen = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        await wait_for(lambda: ["evt_odd", seen] == [e["id"] for e in client.of("event")])
        await _drop_then_resume_without_resync(stack, http, pub, client, user, first)


async def _drop_then_resume_without_resync(
    stack: Stack, http: aiohttp.ClientSession, pub: AsyncPublisher, client: Any, user: str, first: str | None
) -> None:
    """Drop the tab's socket through the management API; it reconnects, resumes, gets the next event, and
    is answered no resync."""
    url = f"{stack.gateway_url}/{stack.settings.gateway_stage}/@connections/{first}"
    async with http.delete(url, headers=SIGNED) as r:
        assert r.status in (200, 204)
    await wait_for(lambda: client.connection_id() not in (None, first), timeout=10)
    after = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
    await wait_for(lambda: after in [e["id"] for e in client.of("event")])
    await asyncio.sleep(0.5)
    assert [] == client.of("resync")


async def test_the_reference_client_resumes_after_an_upgrade_ask_without_a_resync(stack: Stack) -> None:
    """fanout.client takes no upgrade ask (kept in no history) as its last event, as fanout.js does: the
    resume after a dropped socket replays what was missed instead of answering a resync."""
    user, s = f"ck-{secrets.token_hex(4)}", stack.settings
    url = token_url(stack.ws_url, lambda: sign(user, s.jwt_key()))
    resyncs: list[object] = []
    client = FanoutClient(url, backoff=Backoff(0.05, 0.5), on_resync=resyncs.append)
    async with client, AsyncPublisher(s) as pub, aiohttp.ClientSession() as http:
        sub = await client.subscribe(types=["system", "chat", "notification"])
        await asyncio.wait_for(client.connected.wait(), 10)
        first = client.connection_id
        await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        got = [
            (await asyncio.wait_for(sub.get(), 10))["type"]
        ]  # a standard queue keeps no order: ask after it
        await pub.publish("chat.sticker.sent", payload={"stickerId": "s1"}, user_ids=[user], meta={"payloadVersion": 2})  # fmt: skip
        got.append((await asyncio.wait_for(sub.get(), 10))["type"])
        assert ["notification.new", "system.reconnect"] == got
        async with http.delete(
            f"{stack.gateway_url}/{s.gateway_stage}/@connections/{first}", headers=SIGNED
        ) as r:
            assert r.status in (200, 204)
        await wait_for(lambda: client.connected.is_set() and client.connection_id != first, timeout=10)
        after = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        assert after == (await asyncio.wait_for(sub.get(), 10))["id"]
        await asyncio.sleep(0.5)
        assert [] == resyncs


async def test_the_reference_client_reconnects_when_asked_but_not_to_upgrade(stack: Stack) -> None:
    """fanout.client follows a system.reconnect (a new connection after afterMs with jitter) and hands
    an upgrade ask on without reconnecting, as fanout.js does (docs/client.md); it ignored both."""
    user = f"cr-{secrets.token_hex(4)}"
    url = token_url(stack.ws_url, lambda: sign(user, stack.settings.jwt_key()))
    client = FanoutClient(url, backoff=Backoff(0.05, 0.5))
    async with client, AsyncPublisher(stack.settings) as pub:
        sub = await client.subscribe(types=["system", "chat", "notification"])
        await asyncio.wait_for(client.connected.wait(), 10)
        first = client.connection_id
        for _ in range(2):
            await pub.publish("chat.sticker.sent", payload={"stickerId": "s1"}, user_ids=[user], meta={"payloadVersion": 2})  # fmt: skip
        await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        got = [(await asyncio.wait_for(sub.get(), 10))["type"] for _ in range(2)]
        # one upgrade ask per connection (a second would be the frame read for `asked` below); a standard
        # queue keeps no order between the three events
        assert ["notification.new", "system.reconnect"] == sorted(got)
        assert (first, 1) == (client.connection_id, client.connects)

        asked = await pub.publish("system.reconnect", payload={"reason": "maintenance", "afterMs": 0}, user_ids=[user])  # fmt: skip
        assert asked == (await asyncio.wait_for(sub.get(), 10))["id"]
        await wait_for(lambda: client.connected.is_set() and client.connection_id != first, timeout=10)
        assert 2 == client.connects


async def test_the_reference_client_refetches_a_refused_stream_alone(stack: Stack) -> None:
    """fanout.client resumed with a key it may no longer follow (forbidden_stream) resumes again without it
    and refetches that key alone, as fanout.js does, instead of refetching everything it asked."""
    user, s = f"cf-{secrets.token_hex(4)}", stack.settings
    url = token_url(stack.ws_url, lambda: sign(user, s.jwt_key()))
    resyncs: list[object] = []
    client = FanoutClient(url, backoff=Backoff(0.05, 0.5), on_resync=resyncs.append)
    async with client, AsyncPublisher(s) as pub, aiohttp.ClientSession() as http:
        sub = await client.subscribe(types=["notification"])
        await asyncio.wait_for(client.connected.wait(), 10)
        first = client.connection_id
        client.set_position("organization:7", 5)  # no FANOUT_TOPIC_POLICY: not a stream it may follow
        sent = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[user])
        assert sent == (await asyncio.wait_for(sub.get(), 10))["id"]
        async with http.delete(
            f"{stack.gateway_url}/{s.gateway_stage}/@connections/{first}", headers=SIGNED
        ) as r:
            assert r.status in (200, 204)
        await wait_for(lambda: client.connected.is_set() and client.connection_id != first, timeout=10)
        await wait_for(lambda: bool(resyncs))
        await asyncio.sleep(0.3)
        assert [Resync({"organization:7": 5}, events=False)] == resyncs


async def test_the_reference_client_refetches_a_refused_stream_after_every_reconnect(stack: Stack) -> None:
    """A key refused forbidden_stream once is still refetched after each later reconnect, never dropped."""
    user, s = f"cf-{secrets.token_hex(4)}", stack.settings
    url = token_url(stack.ws_url, lambda: sign(user, s.jwt_key()))
    resyncs: list[Resync] = []
    client = FanoutClient(url, backoff=Backoff(0.05, 0.5), on_resync=resyncs.append)
    async with client, aiohttp.ClientSession() as http:
        await asyncio.wait_for(client.connected.wait(), 10)
        client.set_position("organization:7", 5)  # no FANOUT_TOPIC_POLICY: not a stream it may follow
        for n in (1, 2):
            gone = client.connection_id
            async with http.delete(
                f"{stack.gateway_url}/{s.gateway_stage}/@connections/{gone}", headers=SIGNED
            ) as r:
                assert r.status in (200, 204)
            await wait_for(lambda g=gone: client.connected.is_set() and client.connection_id != g, timeout=10)
            await wait_for(lambda n=n: len(resyncs) >= n, timeout=5)
        assert all("organization:7" in r.keys for r in resyncs)
