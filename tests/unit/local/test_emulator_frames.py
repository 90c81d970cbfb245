"""Hostile frames on the emulator's sockets: answered, never a closed socket."""

from __future__ import annotations

import asyncio
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


async def test_an_authorization_header_of_bytes_that_are_not_utf8_is_refused_401(
    emulator: tuple[str, str],
) -> None:
    """aiohttp hands header bytes that are not UTF-8 on as lone surrogates: a bearer token holding some is
    refused 401 like any malformed token, never answered 500."""
    host, key = emulator
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    token = sign("hf2", key).encode() + b"\xff\xed\xa0\x80"
    writer.write(
        b"GET /local HTTP/1.1\r\nHost: "
        + host.encode()
        + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Authorization: Bearer " + token + b"\r\n\r\n"
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    assert status.startswith(b"HTTP/1.1 401 "), status
