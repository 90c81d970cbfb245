"""A ``Lifecycle`` on a real MongoDB (and moto's SQS when a test needs the inbound queue), fed with the
events API Gateway sends; and the Lambda entry point as a fresh container, configured as deployed."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from pymongo import MongoClient

from fanout import logging as fanout_logging
from fanout.lifecycle import Lifecycle, aws
from fanout.lifecycle.metrics import LifecycleMetrics
from fanout.store import ConnectionStore, mongo_client
from tests.conftest import Server, dev_settings
from tests.unit.lifecycle import events
from tests.unit.lifecycle.live import make_live  # noqa: F401 - a fixture of the typing, receipt, presence tests

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


KEY = "k" * 40


@pytest.fixture
def handler(
    mongo_tls_server: Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, MongoClient[dict[str, Any]]]]:
    """``lambda_handler`` configured as a deployed function; the records collection to look at."""
    db = f"lc_{secrets.token_hex(4)}"
    for key, value in {
        "FANOUT_ENV": "production",
        "FANOUT_MONGO_URI": mongo_tls_server.url,  # production reaches MongoDB over TLS only
        "FANOUT_MONGO_DB": db,
        "FANOUT_JWT_SECRET": KEY,
        "FANOUT_CLOUDWATCH_EMF": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle",
    }.items():
        monkeypatch.setenv(key, value)
    reset()
    # SecantusDB does each TLS handshake on its one accept thread. A frozen container's client (its loop
    # runs only during an invocation) can leave a handshake half done between invocations, and a new
    # connection then waits on it: connect this client first, and close the container's before cleaning up
    # (a teardown's first connection once waited out its 20 s connect timeout).
    mongo: MongoClient[dict[str, Any]] = MongoClient(mongo_tls_server.url, tz_aware=True)
    mongo.admin.command("ping")
    yield aws.lambda_handler, mongo
    reset()
    mongo.drop_database(db)
    mongo.close()


def reset() -> None:
    """A fresh container: no clients, no counts, the EMF setting read again."""
    if aws._loop is not None and aws._lifecycle is not None:
        aws._loop.run_until_complete(aws._lifecycle.aclose())
        aws._loop.run_until_complete(aws._lifecycle.services.store._col.database.client.close())
        aws._loop.close()
    aws._loop = aws._lifecycle = None
    aws._metrics = LifecycleMetrics(CollectorRegistry())
    aws._emf, aws._emf_checked = None, False
    if aws._logs_configured:  # the next container configures its logs again
        aws._logs_configured = False
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, fanout_logging._Handler)]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
