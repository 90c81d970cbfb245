"""An emulator in the test's own process, on a free port, over a real SecantusDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from fanout.lifecycle import Lifecycle
from fanout.local.emulator import Emulator
from fanout.store import ConnectionStore, mongo_client
from tests.conftest import Server, dev_settings, free_port


@dataclass
class Running:
    """An emulator serving in this process, with what a test reaches it by."""

    emulator: Emulator
    host: str  # host:port
    key: str  # the connect-token key
    store: ConnectionStore
    collection: str

    @property
    def url(self) -> str:
        return f"ws://{self.host}/local"

    async def records(self, user: str) -> int:
        """The connection records of ``user`` in MongoDB."""
        return await self.store.database[self.collection].count_documents({"userId": user})


@pytest.fixture
async def running(mongo_server: Server) -> AsyncIterator[Running]:
    """An emulator in this process on a free port, over a real SecantusDB."""
    settings = dev_settings(mongo=mongo_server)
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    port = free_port()
    emulator = Emulator(Lifecycle(store, settings), "local", f"127.0.0.1:{port}")
    runner = web.AppRunner(emulator.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Running(emulator, f"127.0.0.1:{port}", settings.jwt_key(), store, settings.connections_collection)
    await runner.cleanup()
    await client.drop_database(settings.mongo_db)
    await client.close()


@pytest.fixture
def emulator(running: Running) -> tuple[str, str]:
    """An emulator in this process on a free port: (its host:port, the connect-token key)."""
    return running.host, running.key
