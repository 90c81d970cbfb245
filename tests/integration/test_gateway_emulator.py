"""The emulator answers like API Gateway: auth on $connect, ping, and the @connections API."""

from __future__ import annotations

import json
import secrets
from contextlib import AsyncExitStack

import aiohttp
import pytest

from fanout.tokens import sign
from tests.conftest import Stack
from tests.helpers import connect, open_store, wait_for

SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/20260217/us-east-1/execute-api/aws4_request"}


@pytest.mark.parametrize("how", ["none", "garbage", "wrong-key"])
async def test_connect_without_a_valid_token_gets_401(stack: Stack, how: str) -> None:
    """A missing or bad token is refused with HTTP 401 before the upgrade."""
    params = {"none": {}, "garbage": {"token": "x.y.z"}, "wrong-key": {"token": sign("u", "w" * 32)}}[how]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(stack.ws_url, params=params)
    assert 401 == caught.value.status


async def test_a_user_past_the_connection_limit_gets_429_until_a_socket_closes(stack: Stack) -> None:
    """One user's sockets up to FANOUT_MAX_CONNECTIONS_PER_USER open; the next handshake is refused with
    HTTP 429 (the clients back off and try again) until one of them closes."""
    limit = stack.settings.max_connections_per_user
    params = {"token": sign(f"many-{secrets.token_hex(4)}", stack.settings.jwt_key())}
    async with aiohttp.ClientSession() as http, AsyncExitStack() as sockets:
        opened = [
            await sockets.enter_async_context(http.ws_connect(stack.ws_url, params=params))
            for _ in range(limit)
        ]
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(stack.ws_url, params=params)
        assert 429 == caught.value.status
        await opened[0].close()

        async def admitted() -> bool:
            try:
                await sockets.enter_async_context(http.ws_connect(stack.ws_url, params=params))
            except aiohttp.WSServerHandshakeError:
                return False
            return True

        await wait_for(admitted)  # once the emulator has run the closed socket's $disconnect


async def test_bearer_header_connects_and_record_is_stored_then_removed(stack: Stack) -> None:
    """Authorization: Bearer works; the record exists while open and is gone after close."""
    user = f"bearer-{secrets.token_hex(4)}"
    mongo, store = open_store(stack.settings)
    token = sign(user, stack.settings.jwt_key())
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.ws_url, headers={"Authorization": f"Bearer {token}"})
        await ws.send_json({"action": "ping"})
        pong = await ws.receive_json(timeout=5)
        assert "ping.pong" == pong["type"]
        [record] = await store._col.find({"userId": user}).to_list(None)
        assert {
            "connectionId",
            "userId",
            "domainName",
            "stage",
            "connectedAt",
            "lastSeenAt",
            "expiresAt",
        } <= set(record)
        await ws.close()
        await wait_for(lambda: _count(store, user, 0))
    await mongo.close()


async def _count(store: object, user: str, n: int) -> bool:
    return n == await store._col.count_documents({"userId": user})  # type: ignore[attr-defined, no-any-return]


async def test_management_api_answers_as_api_gateway(stack: Stack) -> None:
    """POST delivers one text frame, GET describes, DELETE closes; 410, 413 and 403 where documented."""
    settings = stack.settings
    user = f"mgmt-{secrets.token_hex(4)}"
    mongo, store = open_store(settings)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, settings, user)
        [record] = await store._col.find({"userId": user}).to_list(None)
        url = f"{stack.gateway_url}/{settings.gateway_stage}/@connections/{record['connectionId']}"
        async with http.post(url, data=b'{"hello":1}', headers=SIGNED) as r:
            assert 200 == r.status
        await wait_for(lambda: {"hello": 1} in client.frames)
        async with http.get(url, headers=SIGNED) as r:
            assert 200 == r.status
            assert {"connectedAt", "lastActiveAt", "identity"} == set(await r.json())
        async with http.post(url, data=b"x" * (128 * 1024 + 1), headers=SIGNED) as r:
            assert 413 == r.status
        async with http.post(url, data=b"{}") as r:
            assert 403 == r.status  # unsigned
        wrong_stage = url.replace(f"/{settings.gateway_stage}/", "/prod/")
        async with http.post(wrong_stage, data=b"{}", headers=SIGNED) as r:
            assert 403 == r.status
        async with http.delete(url, headers=SIGNED) as r:
            assert r.status in (200, 204)
        await wait_for(lambda: client.ws.closed)
        async with http.post(url, data=b"{}", headers=SIGNED) as r:
            assert 410 == r.status
            assert "GoneException" == r.headers["x-amzn-ErrorType"]
        async with http.get(f"{stack.gateway_url}/_emulator/stats") as r:
            assert json.loads(await r.text())["counts"]["delivered"] >= 1
    await mongo.close()
