"""A ``Lifecycle`` on a real MongoDB (and moto's SQS when a test needs the inbound queue), fed with the
events API Gateway sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fanout.lifecycle import Lifecycle
from fanout.store import ConnectionStore, mongo_client
from tests.conftest import Server, dev_settings
from tests.unit.lifecycle import events

MakeLifecycle = Callable[..., Awaitable[Lifecycle]]


@pytest.fixture
async def make_lifecycle(mongo_server: Server) -> AsyncIterator[MakeLifecycle]:
    """Builds a Lifecycle with settings of the test's choosing (dev defaults, a fresh database)."""
    made: list[tuple[Lifecycle, Any, str]] = []

    async def make(moto: Server | None = None, **fields: Any) -> Lifecycle:
        settings = dev_settings(moto=moto, mongo=mongo_server, **fields)
        client = mongo_client(settings)
        store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
        await store.ensure_indexes()
        lifecycle = Lifecycle(store, settings)
        await lifecycle.services.tickets.ensure_indexes()
        made.append((lifecycle, client, settings.mongo_db))
        return lifecycle

    yield make
    for lifecycle, client, db in made:
        await lifecycle.aclose()
        await client.drop_database(db)
        await client.close()


async def send(
    lc: Lifecycle, connection_id: str, frame: dict[str, Any] | str, route: str = "$default"
) -> dict[str, Any]:
    """A client frame on ``$default`` (or its own route); the envelope the client gets back."""
    body = frame if isinstance(frame, str) else json.dumps(frame)
    answer = await lc.handle(events.message(connection_id, body, route))
    assert 200 == answer["statusCode"]
    return dict(json.loads(answer["body"]))
