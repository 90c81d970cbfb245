"""Virtual connections: the emulator answers posts to ``virt.`` ids with 200 and counts them, no socket."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from fanout.local.emulator import CHOSEN_ID
from fanout.tokens import sign

SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/execute-api/aws4_request"}


async def _stats(http: aiohttp.ClientSession, host: str) -> dict[str, Any]:
    async with http.get(f"http://{host}/_emulator/stats") as r:
        stats: dict[str, Any] = await r.json()
        return stats


async def _post(http: aiohttp.ClientSession, host: str, connection_id: str, **headers: str) -> int:
    url = f"http://{host}/local/@connections/{connection_id}"
    async with http.post(url, data=b'{"v":1}', headers=SIGNED | headers) as r:
        return r.status


async def test_posts_to_virtual_ids_answer_200_and_are_counted(emulator: tuple[str, str]) -> None:
    """Three posts to virtual ids are answered 200, counted as virtual (stats and /metrics), none delivered."""
    host, _ = emulator
    async with aiohttp.ClientSession() as http:
        statuses = [await _post(http, host, f"virt.{i}") for i in range(3)]
        stats = await _stats(http, host)
        async with http.get(f"http://{host}/metrics") as r:
            metrics = await r.text()
    assert [200, 200, 200] == statuses
    assert 3 == stats["counts"]["virtual"]
    assert "delivered" not in stats["counts"]
    assert 0 == stats["open"]
    assert "fanout_gateway_virtual_posts_total 3.0" in metrics
    assert 'fanout_gateway_posts_total{status="200"} 3.0' in metrics


async def test_other_ids_and_other_methods_are_unchanged(emulator: tuple[str, str]) -> None:
    """An unknown plain id still gets 410, a GET of a virtual id 410, and an unsigned virtual post 403."""
    host, _ = emulator
    async with aiohttp.ClientSession() as http:
        plain = await _post(http, host, "abc123")
        async with http.get(f"http://{host}/local/@connections/virt.1", headers=SIGNED) as r:
            fetched = r.status
        async with http.post(f"http://{host}/local/@connections/virt.1", data=b"{}") as r:
            unsigned = r.status
        async with http.post(f"http://{host}/other/@connections/virt.1", data=b"{}", headers=SIGNED) as r:
            wrong_stage = r.status
        stats = await _stats(http, host)
    assert (410, 410, 403, 403) == (plain, fetched, unsigned, wrong_stage)
    assert {"gone": 1, "forbidden": 2} == stats["counts"]


async def test_virtual_posts_take_injected_faults(emulator: tuple[str, str]) -> None:
    """With every post throttled, a virtual post is answered 429 like any other, and not counted virtual."""
    host, _ = emulator
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://{host}/_emulator/faults", json={"throttle": 1}) as r:
            assert 200 == r.status
        status = await _post(http, host, "virt.1")
        stats = await _stats(http, host)
    assert 429 == status
    assert {"throttled": 1} == stats["counts"]


async def test_a_socket_cannot_choose_a_virtual_id(emulator: tuple[str, str]) -> None:
    """A WebSocket asking for a virt. id is refused (409), so a virtual id never names a real socket."""
    host, key = emulator
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"ws://{host}/local", params={"token": sign("v1", key), CHOSEN_ID: "virt.x"}
            )
        ws = await http.ws_connect(
            f"ws://{host}/local", params={"token": sign("v1", key), CHOSEN_ID: "virtx"}
        )
        await ws.close()
    assert 409 == refused.value.status
