"""The emulator's /metrics serves the lifecycle's socket-health counters beside its own."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fanout.tokens import sign
from tests.helpers import wait_for


async def _scrape(
    http: aiohttp.ClientSession, host: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(f"http://{host}/metrics") as response:
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_lifecycle_counters_on_the_emulator_metrics(emulator: tuple[str, str]) -> None:
    """A 401, two connects of one user with a disconnect between them: counted as Prometheus reads them."""
    host, key = emulator
    url = f"ws://{host}/local"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(url, params={"token": "x.y.z"})
        first = await http.ws_connect(url, params={"token": sign("em1", key)})
        await first.close()

        async def disconnected() -> bool:
            return 1 == (await _scrape(http, host)).get(("fanout_lifecycle_disconnects_total", ()), 0)

        await wait_for(disconnected)
        second = await http.ws_connect(url, params={"token": sign("em1", key)})
        got = await _scrape(http, host)
        await second.close()
    assert 1 == got[("fanout_lifecycle_unauthorized_total", ())]
    assert 2 == got[("fanout_lifecycle_connects_total", ())]
    assert 1 == got[("fanout_lifecycle_reconnects_total", ())]
    assert 1 == got[("fanout_gateway_connections_total", (("event", "rejected"),))]  # the emulator's own
    assert not any(name == "fanout_lifecycle_route_errors_total" for name, _ in got)
