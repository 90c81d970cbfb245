"""A stopping emulator waits a bounded time for its route calls (a closed client's $disconnect), cancels
what is left, and hands nothing more to the lifecycle: its MongoDB client closes next."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import aiohttp
import pytest

from fanout.tokens import sign
from tests.conftest import Server
from tests.unit.local.conftest import Running


@contextlib.contextmanager
def frozen(server: Server) -> Iterator[None]:
    """MongoDB stops answering (SIGSTOP) until the block ends."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def _connect(run: Running, http: aiohttp.ClientSession, user: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(run.url, params={"token": sign(user, run.key)})
    assert 1 == await run.records(user)
    return ws


async def _close_until_in_flight(run: Running, ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close the client's socket and return once the emulator's $disconnect for it is running."""
    await ws.close()
    for _ in range(200):
        if run.emulator._calls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the $disconnect never started")


async def test_settle_waits_for_a_disconnect_that_finishes_in_time(
    running: Running, mongo_server: Server
) -> None:
    """A $disconnect held up by a frozen MongoDB for 0.3 s finishes inside a 5 s settle: record removed."""
    async with aiohttp.ClientSession() as http:
        ws = await _connect(running, http, "stop-a")
        with frozen(mongo_server):
            await _close_until_in_flight(running, ws)
            thaw = asyncio.get_running_loop().call_later(
                0.3, os.kill, mongo_server.process.pid, signal.SIGCONT
            )
            started = time.monotonic()
            await running.emulator.settle(5.0)
            waited = time.monotonic() - started
            thaw.cancel()
    assert "cancelled_stopping" not in running.emulator.counts
    assert 0.2 < waited < 5.0
    assert 0 == await running.records("stop-a")


async def test_settle_cancels_what_is_still_running_at_its_limit(
    running: Running, mongo_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A $disconnect stuck in a frozen MongoDB is cancelled at the limit and counted; nothing is logged
    as a failed route."""
    async with aiohttp.ClientSession() as http:
        ws = await _connect(running, http, "stop-b")
        with frozen(mongo_server):
            await _close_until_in_flight(running, ws)
            started = time.monotonic()
            await running.emulator.settle(0.3)
            waited = time.monotonic() - started
            await asyncio.sleep(0.05)  # the cancelled handler unwinds
    assert 1 == running.emulator.counts["cancelled_stopping"]
    assert waited < 2.0
    assert not running.emulator._calls
    assert "route_failed" not in capsys.readouterr().err


async def test_a_stopping_emulator_hands_no_route_to_the_lifecycle(running: Running) -> None:
    """After settle, a new connection is refused with 503 and no record is written for it."""
    await running.emulator.settle(0.1)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(running.url, params={"token": sign("stop-c", running.key)})
    assert 503 == refused.value.status
    assert 1 == running.emulator.counts["skipped_stopping"]
    assert 0 == await running.records("stop-c")
