"""A fan-out whose lookup fails raises that error to its caller and leaves nothing half-answered."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from fanout.envelope import parse_body
from fanout.gateway.client import ManagementClient
from fanout.gateway.http import HttpClient
from fanout.metrics import Metrics
from fanout.store import ConnectionStore
from fanout.worker.delivery import Deliverer
from tests.conftest import free_port
from tests.corpus import valid


async def test_a_failed_lookup_raises_and_leaves_no_unretrieved_future() -> None:
    """MongoDB refusing connections: deliver() raises the lookup's error, and asyncio reports no future
    whose error nobody read (each such report is an error-level log line during an outage)."""
    reports: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reports.append(context))
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=200, timeoutMS=300
    )
    http = HttpClient(timeout_s=1)
    deliverer = Deliverer(
        ConnectionStore.from_client(mongo, "fanout", "websocketconnections"),
        ManagementClient(http, None, region="us-east-1", dev=True),
        Metrics(CollectorRegistry()),
        max_posts_in_flight=2,
        attempts=1,
    )
    try:
        with pytest.raises(PyMongoError):
            await deliverer.deliver(parse_body(json.dumps(valid())), time.monotonic() + 5)
    finally:
        await deliverer.close()
        await http.close()
        await mongo.close()
    gc.collect()
    await asyncio.sleep(0)
    assert [] == [r["message"] for r in reports if "never retrieved" in r.get("message", "")]
