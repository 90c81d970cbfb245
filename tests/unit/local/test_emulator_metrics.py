"""The emulator's /metrics serves the lifecycle's socket-health counters beside its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from fanout.lifecycle import Lifecycle
from fanout.local.emulator import Emulator
from fanout.store import ConnectionStore, mongo_client
from fanout.tokens import sign
from tests.conftest import Server, dev_settings, free_port
from tests.helpers import wait_for


@pytest.fixture
async def emulator(mongo_server: Server) -> AsyncIterator[tuple[str, str]]:
    """An emulator in this process on a free port: (its base URL, the connect-token key)."""
    settings = dev_settings(mongo=mongo_server)
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    port = free_port()
    emulator = Emulator(Lifecycle(store, settings), "local", f"127.0.0.1:{port}")
    runner = web.AppRunner(emulator.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"127.0.0.1:{port}", settings.jwt_key()
    await runner.cleanup()
    await client.drop_database(settings.mongo_db)
    await client.close()


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
