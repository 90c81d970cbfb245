"""A fresh connection collection per test on the session's MongoDB-wire server (SecantusDB)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from fanout.envelope import Target
from fanout.store import Connection, ConnectionStore
from tests.conftest import Server

#: The records the ``store`` fixture's lookups skipped as malformed.
SKIPPED: list[dict[str, Any]] = []


@pytest.fixture
async def store(mongo_server: Server) -> AsyncIterator[ConnectionStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    SKIPPED.clear()
    store = ConnectionStore.from_client(client, "fanout", f"conn_{secrets.token_hex(4)}", SKIPPED.append)
    await store.ensure_indexes()
    yield store
    await store._col.drop()
    await client.close()


async def resolve_all(store: ConnectionStore, target: Target) -> list[Connection]:
    """Every connection ``store.resolve(target)`` yields, its batches joined."""
    return [c async for batch in store.resolve(target) for c in batch]
