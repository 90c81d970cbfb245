"""/healthz, /readyz and /metrics, served the same way for a worker process and for the pool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from fanout.health import STALL_S, Readiness, health_app, serve
from tests.conftest import free_port


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Readiness]]:
    readiness = Readiness()
    registry = CollectorRegistry()
    Counter("fanout_probe", "a test counter", registry=registry).inc()
    port = free_port()
    runner = await serve(health_app(lambda: registry, readiness.live, readiness.check), "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", readiness
    await runner.cleanup()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.text()


async def test_alive_but_not_ready_while_dependencies_are_awaited(served: tuple[str, Readiness]) -> None:
    """A fresh worker is live (200) and not ready (503) until SQS and MongoDB answer."""
    url, readiness = served
    assert 200 == (await _get(f"{url}/healthz"))[0]
    status, body = await _get(f"{url}/readyz")
    assert 503 == status
    assert '"sqs": false' in body
    readiness.sqs = readiness.mongo = True
    assert 200 == (await _get(f"{url}/readyz"))[0]


async def test_a_down_gateway_or_a_stalled_loop_shows(served: tuple[str, Readiness]) -> None:
    """The management API down makes it not ready; a heartbeat older than the stall limit makes it not live."""
    url, readiness = served
    readiness.sqs = readiness.mongo = True
    readiness.gateway_down(for_s=30)
    assert 503 == (await _get(f"{url}/readyz"))[0]
    readiness.gateway_up()
    readiness.heartbeat = time.monotonic() - STALL_S - 1
    assert 503 == (await _get(f"{url}/healthz"))[0]


async def test_metrics_serve_the_registry(served: tuple[str, Readiness]) -> None:
    """/metrics exposes the registry it was given in Prometheus' text format."""
    url, _ = served
    status, text = await _get(f"{url}/metrics")
    assert (200, True) == (status, "fanout_probe_total 1.0" in text)
