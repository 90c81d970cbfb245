"""An emulator in the test's own process, on a free port, over a real SecantusDB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from fanout.lifecycle import Lifecycle
from fanout.local.emulator import Emulator
from fanout.store import ConnectionStore, mongo_client
from tests.conftest import Server, dev_settings, free_port


@pytest.fixture
async def emulator(mongo_server: Server) -> AsyncIterator[tuple[str, str]]:
    """An emulator in this process on a free port: (its host:port, the connect-token key)."""
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
