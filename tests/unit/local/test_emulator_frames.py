"""Hostile frames on the emulator's sockets: answered, never a closed socket."""

from __future__ import annotations

import json

import aiohttp
import pytest

from fanout.tokens import sign


@pytest.mark.parametrize("action", [["ping"], {"a": 1}])
async def test_an_unhashable_action_is_answered_unknown_action_and_the_socket_stays(
    emulator: tuple[str, str], action: object
) -> None:
    """A frame whose ``action`` is a list or an object gets ``system.error`` and the socket still answers
    a ping afterwards (the emulator's route lookup must not raise on it)."""
    host, key = emulator
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://{host}/local", params={"token": sign("hf1", key)})
        await ws.send_str(json.dumps({"action": action, "id": "x1"}))
        first = await ws.receive(timeout=5)
        await ws.send_str(json.dumps({"action": "ping", "id": "p1"}))
        second = await ws.receive(timeout=5)
        await ws.close()
    assert aiohttp.WSMsgType.TEXT == first.type, first
    assert ("system.error", "unknown_action") == (
        json.loads(first.data)["type"],
        json.loads(first.data)["payload"]["code"],
    )
    assert aiohttp.WSMsgType.TEXT == second.type, second
    assert "ping.pong" == json.loads(second.data)["type"]
