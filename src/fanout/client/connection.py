"""``FanoutClient``: one WebSocket connection per process, shared by every subscriber in it.

The connection's life, read top to bottom in ``_connect_once``: build the connect URL (pluggable: a
token today, a ticket later), ``hello`` first (the answer names the connection and the server's
heartbeat), subscribe every subscriber's topics, ``resume`` from what this process already has, then
read frames until the socket closes, with a ``ping`` every ``heartbeat_s``. A lost connection comes back
after an exponential backoff with full jitter. Every event is dropped when its id was seen already,
and handed on in ``seq`` order per ordering key; a gap is held back for ``hold_s``, then resumed, then
given up (the application is told to refetch, as it is for a ``system.resync``). A
``system.access.revoked`` takes its topics out of every subscriber, so no reconnect asks for them again.
A ``hello``, ``subscribe``, ``resume`` or ``presence.query`` refused ``rate_limited`` is sent again once
the server's window has passed, a few times at most.

The rules are the protocol's (docs/client.md): a web client in TypeScript follows the same ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from fanout.catalog import ACCESS_REVOKED, TOPIC_PATTERN
from fanout.client.backoff import Backoff
from fanout.client.dedupe import RecentIds
from fanout.client.reorder import Frame, Reorderer, is_seq
from fanout.client.subscription import RequestFailed, Resync, Subscription, UrlBuilder
from fanout.logging import get_logger

log = get_logger("fanout.client")

#: Keys a resume may name (streams are named like topics), and how many at most.
RESUMABLE = re.compile(TOPIC_PATTERN)
MAX_RESUME_KEYS = 100
MAX_TOPICS_PER_FRAME = 100
#: How often a resume refused ``forbidden_stream`` is sent again without the key the server named.
MAX_RESUME_RETRIES = 5
#: This process's earlier connection ids a resume names: events that excluded them were its own changes.
MAX_EARLIER_IDS = 10
#: Actions sent again when refused ``rate_limited``: the server counted nothing of them, and each is
#: worth as much ``windowS`` later. A typing indicator or a domain action is not: the application decides.
PATIENT_ACTIONS = frozenset({"hello", "subscribe", "notification.subscribe", "resume", "presence.query"})
#: How often one such frame is sent again; then the refusal is its answer (the action's failure path).
MAX_RATE_LIMITED_RETRIES = 3
#: The longest ``windowS`` waited for; a longer (or malformed) one is taken as the answer.
MAX_WINDOW_S = 60.0
#: The shortest heartbeat a ``hello`` answer may ask for: pings are not rate limited, and each writes
#: the connection's record.
MIN_HEARTBEAT_S = 1.0
#: A ``system.reconnect``'s ``afterMs`` without one, and the longest followed: a tab asked to stay away
#: longer would miss every event meanwhile.
RECONNECT_AFTER_S = 1.0
MAX_RECONNECT_AFTER_S = 300.0


class FanoutClient:
    """The process's connection to fanout; use as ``async with FanoutClient(url) as client``."""

    def __init__(
        self,
        url: UrlBuilder,
        *,
        heartbeat_s: float = 30.0,
        request_timeout_s: float = 10.0,
        hold_s: float = 2.0,
        replay_wait_s: float = 10.0,
        backoff: Backoff | None = None,
        dedupe_capacity: int = 10_000,
        on_resync: Callable[[Resync], Awaitable[None] | None] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._url = url
        self.heartbeat_s = heartbeat_s
        self.request_timeout_s = request_timeout_s
        self.backoff = backoff or Backoff()
        self.reorder = Reorderer(hold_s)
        self.replay_wait_s = replay_wait_s  # how long a gap waits for the events a resume is replaying
        self.recent = RecentIds(dedupe_capacity)
        self.on_resync = on_resync
        self.connection_id: str | None = None  # from system.connected
        self.connection_ids: list[str] = []  # this process's connection ids, the latest last
        self.last_event_id: str | None = None  # the last event handed on
        self.connected = asyncio.Event()
        self.connects = 0  # connections opened (1 + reconnects)
        self.duplicates = 0  # frames dropped by id
        self._session, self._own_session = session, session is None
        self._subs: list[Subscription] = []
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._ids = itertools.count(1)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ws_closed = asyncio.Event()  # set when the current socket's reading ends
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._asked_after_s: float | None = None  # a system.reconnect's afterMs, for the next wait
        self._can_resume = True
        self._resumed_gap: dict[str, float] = {}  # key -> when its resumed gap is given up (monotonic)
        self._unresumable: set[str] = set()  # keys the server refused to resume (forbidden_stream)

    async def __aenter__(self) -> FanoutClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Connect in the background, and keep reconnecting until ``close``."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    async def subscribe(self, topics: Iterable[str] = (), *, types: Iterable[str] = ()) -> Subscription:
        """A subscriber of ``types`` (prefixes such as ``chat.message``; none: every event); its topics
        are added to the connection now and on every reconnect."""
        sub = Subscription(self, tuple(topics), tuple(types))
        new = [t for t in sub.topics if t not in self._topics()]
        self._subs.append(sub)
        if new and self._ws is not None:
            answer = await self.request("subscribe", topics=new)
            if answer.get("type") != "subscribe.ok":
                self._subs.remove(sub)
                raise PermissionError(f"subscribe refused: {answer.get('payload', {}).get('code')}")
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if sub not in self._subs:
            return
        self._subs.remove(sub)
        gone = [t for t in sub.topics if t not in self._topics()]
        if gone and self._ws is not None:
            await self.request("unsubscribe", topics=gone)

    def set_position(self, key: str, seq: int) -> None:
        """Start ``key`` at ``seq``: the application's data (from GraphQL) already holds the key's events up
        to it, so the next one expected is ``seq`` + 1 (0 for a stream read from its start)."""
        self._hand_on(self.reorder.expect(key, seq))

    async def request(self, action: str, **fields: Any) -> Frame:
        """Send one action frame and return its answer (matched by ``replyTo``). A frame of
        ``PATIENT_ACTIONS`` refused ``rate_limited`` is sent again on the same socket once the answer's
        ``windowS`` (and up to a fifth more, so tabs refused together do not return together) has
        passed, at most ``MAX_RATE_LIMITED_RETRIES`` times."""
        ws, closed = self._ws, self._ws_closed
        if ws is None:
            raise RequestFailed("not connected")
        answer = await self._request_once(ws, action, fields)
        for _ in range(MAX_RATE_LIMITED_RETRIES if action in PATIENT_ACTIONS else 0):
            wait = rate_limited_wait(answer)
            if wait is None:
                break
            wait *= 1 + self.backoff.rng.uniform(0, 0.2)
            log.info("client_rate_limited", action=action, wait_s=round(wait, 2))
            with contextlib.suppress(TimeoutError):  # the window passed; a socket that closes ends it
                await asyncio.wait_for(closed.wait(), wait)
            if self._ws is not ws or closed.is_set():
                raise RequestFailed(f"{action}: not connected")
            answer = await self._request_once(ws, action, fields)
        return answer

    async def _request_once(
        self, ws: aiohttp.ClientWebSocketResponse, action: str, fields: dict[str, Any]
    ) -> Frame:
        frame_id = f"c{next(self._ids)}"
        answer: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = answer
        try:
            await ws.send_str(json.dumps({"action": action, "id": frame_id, **fields}))
            async with asyncio.timeout(self.request_timeout_s):
                return await answer
        except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            raise RequestFailed(f"{action}: {type(exc).__name__}") from None
        finally:
            self._pending.pop(frame_id, None)

    def _topics(self) -> list[str]:
        return list(dict.fromkeys(t for sub in self._subs for t in sub.topics))

    # ---- the connection's life

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of one connection: back off, then connect again
                log.info("client_disconnected", error=type(exc).__name__)
            if not self._closing:
                asked, self._asked_after_s = self._asked_after_s, None
                await asyncio.sleep(random.uniform(0, asked) if asked is not None else self.backoff.next())

    async def _connect_once(self) -> None:
        assert self._session is not None
        url = await self._url()
        async with self._session.ws_connect(url, heartbeat=None) as ws:
            self._ws, self._ws_closed = ws, asyncio.Event()
            reader = asyncio.create_task(self._read(ws))
            helpers: list[asyncio.Task[None]] = []
            try:
                await self._open()
                self.connects += 1
                self.backoff.reset()
                self.connected.set()
                helpers = [
                    asyncio.create_task(self._heartbeat(ws)),
                    asyncio.create_task(self._watch_gaps(ws)),
                ]
                await reader
            finally:
                self.connected.clear()
                self._ws = None
                for task in (reader, *helpers):
                    task.cancel()
                await asyncio.gather(reader, *helpers, return_exceptions=True)

    async def _open(self) -> None:
        """``hello``, the subscribers' topics, then ``resume`` from what this process has."""
        hello = await self.request("hello", protocols=[1])
        payload = hello.get("payload") or {}
        if hello.get("type") == "system.connected":
            self.connection_id = payload.get("connectionId")
            if isinstance(self.connection_id, str):
                self.connection_ids = [*self.connection_ids, self.connection_id][-MAX_EARLIER_IDS:]
            self.heartbeat_s = heartbeat_of(payload, self.heartbeat_s)
            self._can_resume = payload.get("resume", True) is not False
        elif payload.get("code") != "unknown_action":  # a server before hello answers unknown_action
            raise RequestFailed(f"hello refused: {payload.get('code')}")
        topics = self._topics()
        for start in range(0, len(topics), MAX_TOPICS_PER_FRAME):
            await self._subscribe_again(topics[start : start + MAX_TOPICS_PER_FRAME])
        if self.reorder.positions or self.last_event_id:
            await self._resume(list(self.reorder.positions), with_events=True)

    async def _subscribe_again(self, topics: list[str]) -> None:
        """Subscribe a reconnected connection. One refused topic refuses the whole frame: the topics this
        process may no longer follow (revocations it missed while away) are left out of this connection
        and the rest sent again, so they do not cost the others (``refused_topics``)."""
        while topics:
            answer = await self.request("subscribe", topics=topics)
            if answer.get("type") == "subscribe.ok":
                return
            payload = answer.get("payload")
            log.warning(
                "client_subscribe_refused", code=payload.get("code") if isinstance(payload, dict) else None
            )
            if not (refused := refused_topics(answer, topics)):
                return
            topics = [t for t in topics if t not in refused]

    async def _resume(self, keys: list[str], *, with_events: bool) -> None:
        resumable = [k for k in keys if RESUMABLE.fullmatch(k) and k not in self._unresumable]
        positions = {k: self.reorder.positions[k] for k in resumable}
        positions = dict(list(positions.items())[-MAX_RESUME_KEYS:])  # the freshest keys
        last = self.last_event_id if with_events else None
        # Keys the server would not resume (now, or before): refetched, the others resumed.
        refused = {k: self.reorder.positions[k] for k in keys if k in self._unresumable}
        for tries in itertools.count():
            if not self._can_resume or not (positions or last):
                await self._resync(Resync(positions | refused, events=last is not None))
                return
            fields: dict[str, Any] = {"lastEventId": last} if last else {}
            if self.connection_ids:  # the events that excluded them were this process's own changes
                fields["connectionIds"] = self.connection_ids
            answer = await self.request("resume", positions=positions, **fields)
            kind, payload = answer.get("type"), answer.get("payload") or {}
            if kind == "resume.ok":  # a gap of these keys waits for the replay, or a hold when there is none
                wait = self.replay_wait_s if payload.get("replaying") else self.reorder.hold_s
                self._resumed_gap |= dict.fromkeys(positions, time.monotonic() + wait)
                if refused:
                    await self._resync(Resync(refused))
                return
            if kind == "system.resync":
                keys_: Any = payload.get("keys")
                keys_ = keys_ if isinstance(keys_, dict) else {}
                fresh = {k: v for k, v in keys_.items() if isinstance(k, str) and is_seq(v)}
                await self._resync(Resync(refused | fresh, events=payload.get("events") is True))
                return
            # A key the connection may not follow (a topic revoked while away): resume the others, and
            # refetch that one, rather than everything asked.
            key = payload.get("key")
            if payload.get("code") == "forbidden_stream" and key in positions and tries < MAX_RESUME_RETRIES:
                self._unresumable.add(key)
                refused[key] = positions.pop(key)
                continue
            if payload.get("code") == "unknown_action":  # refused or unknown: refetch everything asked
                self._can_resume = False
            log.warning("client_resume_refused", code=payload.get("code"))
            await self._resync(Resync(positions | refused, events=last is not None))
            return

    async def _resync(self, resync: Resync) -> None:
        """Move the keys to their new positions, then tell the application what to refetch."""
        for key, seq in resync.keys.items():
            self._hand_on(self.reorder.expect(key, seq))
        if self.on_resync is not None and (resync.keys or resync.events):
            done = self.on_resync(resync)
            if inspect.isawaitable(done):
                await done

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and not self._on_frame(msg.data):
                    return  # the socket closes, and the client reconnects
        finally:
            self._ws_closed.set()  # a rate-limited wait on this socket ends too
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(ConnectionError("connection closed"))

    def _on_frame(self, text: str) -> bool:
        """Handle one frame; False when it says the connection has no record any more."""
        try:
            frame = json.loads(text)
        except ValueError:
            return True
        if not isinstance(frame, dict):
            return True
        answer = self._pending.get(str(frame.get("replyTo")))
        if answer is not None and not answer.done():
            answer.set_result(frame)
        elif isinstance(frame.get("id"), str):
            if not self.recent.add(frame["id"]):
                self.duplicates += 1
                return True
            self._hand_on(self.reorder.push(frame))
        payload = frame.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        # The record expired or was pruned (whatever frame was answered so, a ping too): nothing
        # reaches this socket any more; a new connection gets a record (protocol section 8).
        if frame.get("type") == "system.error" and payload.get("code") == "unknown_connection":
            log.info("client_record_lost")
            return False
        if (asked := reconnect_after(frame)) is not None:
            self._asked_after_s = asked
            log.info("client_asked_to_reconnect", after_s=asked)
            return False
        return True

    def _hand_on(self, frames: list[Frame]) -> None:
        for frame in frames:
            if not is_upgrade_ask(frame):
                self.last_event_id = frame["id"]
            if frame.get("type") == ACCESS_REVOKED:
                self._revoked(frame.get("payload"))
            for sub in self._subs:
                if sub.matches(frame):
                    sub.put(frame)

    def _revoked(self, payload: Any) -> None:
        """The server took these topics off every connection of this user: no subscriber holds them any
        more (a reconnect does not ask for them), and no resume names them."""
        topics = payload.get("topics") if isinstance(payload, dict) else None
        gone = {t for t in topics if isinstance(t, str)} if isinstance(topics, list) else set()
        for sub in self._subs:
            sub.topics = tuple(t for t in sub.topics if t not in gone)
        for key in gone:
            self.reorder.forget(key)
            self._resumed_gap.pop(key, None)
        log.info("client_topics_revoked", topics=len(gone))

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """A ``ping`` every ``heartbeat_s``; no answer in time closes the socket, and it reconnects."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.request("ping")
            except RequestFailed:
                await ws.close()
                return

    async def _watch_gaps(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """A gap held for ``hold_s`` is resumed; still open once the resume's replay had time to arrive
        (``replay_wait_s``, or ``hold_s`` when it replays nothing), it is given up and the application
        told to refetch the key."""
        while True:
            await asyncio.sleep(max(0.05, self.reorder.hold_s / 4))
            overdue = self.reorder.overdue()
            now = time.monotonic()
            for key in [k for k, until in self._resumed_gap.items() if k not in overdue and until <= now]:
                del self._resumed_gap[key]
            for key in overdue:
                until = self._resumed_gap.get(key)
                resumable = RESUMABLE.fullmatch(key) and key not in self._unresumable
                if until is None and self._can_resume and resumable:
                    try:
                        await self._resume([key], with_events=False)
                    except RequestFailed:
                        await ws.close()  # no answer: the connection is not working; reconnect
                        return
                elif until is None or now >= until:
                    self._resumed_gap.pop(key, None)
                    self._hand_on(self.reorder.skip(key))
                    await self._resync(Resync({key: self.reorder.positions[key]}))


def refused_topics(answer: Frame, asked: list[str]) -> set[str]:
    """The topics of ``asked`` that a ``forbidden_topic`` refusal names: every one in its ``topics``, or
    the one ``topic`` of a server before that. Nothing for another answer, and never a topic not asked,
    so a retry without them always asks for less."""
    payload = answer.get("payload")
    if answer.get("type") != "system.error" or not isinstance(payload, dict):
        return set()
    if payload.get("code") != "forbidden_topic":
        return set()
    named = payload.get("topics")
    named = named if isinstance(named, list) else [payload.get("topic")]
    return {t for t in named if isinstance(t, str)} & set(asked)


def heartbeat_of(connected: dict[str, Any], current: float) -> float:
    """The heartbeat to keep after a ``system.connected``: its ``heartbeatS`` when shorter, if that is a
    number of at least ``MIN_HEARTBEAT_S`` (a ping a millisecond is no heartbeat)."""
    beat = connected.get("heartbeatS")
    if isinstance(beat, int | float) and not isinstance(beat, bool) and beat >= MIN_HEARTBEAT_S:
        return min(current, float(beat))
    return current


def is_upgrade_ask(frame: dict[str, Any]) -> bool:
    """A ``system.reconnect`` asking to upgrade (protocol section 12): the worker posts it to one connection
    and keeps it in no history, so its id is never a resume's ``lastEventId`` (that would be a resync)."""
    payload = frame.get("payload")
    upgrade = isinstance(payload, dict) and payload.get("reason") == "upgrade"
    return frame.get("type") == "system.reconnect" and upgrade


def reconnect_after(frame: dict[str, Any]) -> float | None:
    """The seconds within which to reconnect, when ``frame`` is a ``system.reconnect`` to follow: its
    ``afterMs`` (1 s without a sane one, at most ``MAX_RECONNECT_AFTER_S``). None for any other frame,
    and for an upgrade ask: the same ``hello`` on a new connection would be asked again by the next event
    of that version; the application gets it like any event (docs/client.md)."""
    if frame.get("type") != "system.reconnect" or is_upgrade_ask(frame):
        return None
    payload = frame["payload"] if isinstance(frame.get("payload"), dict) else {}
    after = payload.get("afterMs")
    if isinstance(after, int | float) and not isinstance(after, bool) and after >= 0:
        return min(after / 1000, MAX_RECONNECT_AFTER_S)
    return RECONNECT_AFTER_S


def rate_limited_wait(answer: Frame) -> float | None:
    """The seconds a ``rate_limited`` refusal asks to wait (its ``windowS``); None for any other answer,
    or a window that is not a number of seconds from 0 to ``MAX_WINDOW_S``."""
    payload = answer.get("payload")
    if answer.get("type") != "system.error" or not isinstance(payload, dict):
        return None
    window = payload.get("windowS")
    if (
        payload.get("code") != "rate_limited"
        or isinstance(window, bool)
        or not isinstance(window, int | float)
    ):
        return None
    return float(window) if 0 < window <= MAX_WINDOW_S else None
