"""fanout.js against a real lifecycle whose answers the test can hold back: the gateway emulator in the
test's own process over a real SecantusDB, so a frame the client sends while its connection is still
being set up (hello, subscribe, resume) meets the server it would meet in production."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fanout.lifecycle import handler, hello, limits
from tests.conftest import Server, dev_settings
from tests.helpers import wait_for
from tests.integration.test_client_limits import Local, serve_local
from tests.integration.test_client_live import SIGNED, fanout_js


@pytest.fixture
async def local(mongo_server: Server) -> AsyncIterator[Local]:
    """The emulator in this process on a free port."""
    async with serve_local(dev_settings(mongo=mongo_server, presence=False)) as served:
        yield served


async def test_a_subscriber_added_while_the_connection_resumes_gets_its_topics(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber added once the connection sent its subscribers' topics but before it is open (its
    resume not answered yet) has its topics added to that connection, not only to the next one."""
    answer = asyncio.Event()
    resume = handler.ACTIONS["resume"]

    async def held(services: Any, frame: Any) -> Any:
        await answer.wait()
        return await resume(services, frame)

    monkeypatch.setitem(handler.ACTIONS, "resume", held)
    user, run = f"cr-{secrets.token_hex(4)}", secrets.token_hex(4)
    first, late = f"event:{run}a", f"event:{run}b"
    async with fanout_js(local, user, opened=False, topics=[first], positions={first: 0}) as client:
        await wait_for(lambda: _holds(local, user, [first]), timeout=10)
        await client.do("subscribe", topics=[late])
        await wait_for(lambda: bool(client.of("done")))
        answer.set()
        await wait_for(lambda: client.connection_id() is not None)
        await wait_for(lambda: _holds(local, user, [first, late]), timeout=5)


@pytest.mark.parametrize("heartbeat", [0.001, "0.001"], ids=["number", "string"])
async def test_fanout_js_pings_at_most_once_a_second_whatever_hello_says(
    local: Local, monkeypatch: pytest.MonkeyPatch, heartbeat: object
) -> None:
    """A hello answer whose heartbeatS is not a number of seconds of at least 1 (a buggy server) is not
    followed: it set a ping every millisecond, each a write of the connection record, for the rest of
    the page's life (the client keeps the lowest heartbeat it was told)."""
    pings: list[float] = []
    ping = handler.ACTIONS["ping"]

    async def counted(services: Any, frame: Any) -> Any:
        pings.append(time.monotonic())
        return await ping(services, frame)

    monkeypatch.setitem(handler.ACTIONS, "ping", counted)
    monkeypatch.setattr(hello, "HEARTBEAT_S", heartbeat)
    async with fanout_js(local, f"ch-{secrets.token_hex(4)}"):
        await asyncio.sleep(1.5)
    assert [] == pings


def _hellos(monkeypatch: pytest.MonkeyPatch, *, refused: bool, first_waits_s: float = 0) -> list[str]:
    """The connection of each hello frame the lifecycle gets, in order; with ``refused`` every hello is
    answered rate_limited with a 60 s window; the first waits ``first_waits_s`` for its answer."""
    hellos: list[str] = []
    reply = handler.ACTIONS["hello"]

    async def counted(services: Any, frame: Any) -> Any:
        hellos.append(frame.connection_id)
        if len(hellos) == 1 and first_waits_s:
            await asyncio.sleep(first_waits_s)
        return await reply(services, frame)

    monkeypatch.setitem(handler.ACTIONS, "hello", counted)
    if refused:
        monkeypatch.setattr(hello, "HELLOS_PER_WINDOW", 0)
        monkeypatch.setattr(limits, "WINDOW_S", 60)
    return hellos


async def test_fanout_js_closed_and_started_while_a_refused_hello_waits_connects_again_at_once(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hello refused rate_limited waits windowS (60 s here) on its socket; when that socket closes
    (close() then start(), or the server going away) the wait ends with it: the client connects again
    after its backoff, not once the window of a connection that is gone has passed."""
    hellos = _hellos(monkeypatch, refused=True)
    options = {"backoffBaseMs": 50}
    async with fanout_js(local, f"cw-{secrets.token_hex(4)}", opened=False, options=options) as client:
        await wait_for(lambda: len(hellos) == 1, timeout=10)
        await client.do("close")
        await client.do("start")
        await wait_for(lambda: len(set(hellos)) == 2, timeout=5)


@pytest.mark.parametrize("answer", ["none yet", "rate_limited"])
async def test_fanout_js_whose_socket_goes_while_its_hello_waits_connects_again_at_once(
    local: Local, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """A socket that goes away (a deploy, API Gateway) while its hello waits, for the answer or out a
    rate_limited window, fails the hello then: the client connects again after its backoff, instead of
    waiting for the answer's timeout (10 s) or the window (60 s here) of a connection that is gone."""
    refused = answer == "rate_limited"
    hellos = _hellos(monkeypatch, refused=refused, first_waits_s=0 if refused else 30)
    options = {"backoffBaseMs": 50}
    async with (
        fanout_js(local, f"cg-{secrets.token_hex(4)}", opened=False, options=options),
        aiohttp.ClientSession() as http,
    ):
        await wait_for(lambda: len(hellos) == 1, timeout=10)
        await asyncio.sleep(0.5)  # the refusal reached the client
        gateway = local.ws_url.replace("ws://", "http://")
        async with http.delete(f"{gateway}/@connections/{hellos[0]}", headers=SIGNED) as r:
            assert r.status in (200, 204)
        await wait_for(lambda: len(set(hellos)) == 2, timeout=5)


async def _holds(local: Local, user: str, topics: list[str]) -> bool:
    return [sorted(topics)] == await local.topics(user)


async def test_the_reference_client_whose_socket_goes_during_a_rate_limited_hello_connects_again_at_once(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fanout.client follows the same rule as fanout.js: a hello refused rate_limited (windowS 60 here)
    waits on its socket, and when that socket goes away the wait ends with it, so the client connects
    again after its backoff rather than once the window of a connection that is gone has passed."""
    from fanout.client import Backoff, FanoutClient, token_url
    from fanout.tokens import sign

    hellos = _hellos(monkeypatch, refused=True)
    user = f"cp-{secrets.token_hex(4)}"
    url = token_url(local.ws_url, lambda: sign(user, local.settings.jwt_key()))
    async with FanoutClient(url, backoff=Backoff(0.05, 0.5)), aiohttp.ClientSession() as http:
        await wait_for(lambda: len(hellos) == 1, timeout=10)
        await asyncio.sleep(0.5)  # the refusal reached the client, which waits its window
        gateway = local.ws_url.replace("ws://", "http://")
        async with http.delete(f"{gateway}/@connections/{hellos[0]}", headers=SIGNED) as r:
            assert r.status in (200, 204)
        await wait_for(lambda: len(set(hellos)) == 2, timeout=5)
