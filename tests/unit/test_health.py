"""/healthz, /readyz and /metrics, served the same way for a worker process and for the pool.

Readiness of the management API, tracked per endpoint: one dead endpoint is not an outage.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from fanout.health import DOWN_S, MAX_ENDPOINTS, STALL_S, UP_S, Readiness, health_app, serve
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
    readiness.endpoint_seen("api.example/prod", reachable=False)
    assert 503 == (await _get(f"{url}/readyz"))[0]
    readiness.endpoint_seen("api.example/prod", reachable=True)
    readiness.heartbeat = time.monotonic() - STALL_S - 1
    assert 503 == (await _get(f"{url}/healthz"))[0]


async def test_metrics_serve_the_registry(served: tuple[str, Readiness]) -> None:
    """/metrics exposes the registry it was given in Prometheus' text format."""
    url, _ = served
    status, text = await _get(f"{url}/metrics")
    assert (200, True) == (status, "fanout_probe_total 1.0" in text)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_unreachable_endpoint_beside_a_reachable_one_keeps_the_gateway_ready() -> None:
    """A record's dead endpoint does not make the gateway not ready while another endpoint answers."""
    clock = Clock()
    readiness = Readiness(clock)
    readiness.endpoint_seen("api.example/prod", reachable=True)
    clock.now += UP_S / 2  # the good API has been idle since
    readiness.endpoint_seen("127.0.0.1:1/local", reachable=False)
    assert readiness.gateway


def test_every_endpoint_unreachable_is_an_outage_until_one_answers() -> None:
    """When every endpoint seen recently is unreachable the gateway is not ready; an answer ends it."""
    clock = Clock()
    readiness = Readiness(clock)
    assert readiness.gateway  # nothing seen yet
    readiness.endpoint_seen("api.example/prod", reachable=True)
    readiness.endpoint_seen("api.example/prod", reachable=False)  # the last answer counts
    readiness.endpoint_seen("other.example/prod", reachable=False)
    assert not readiness.gateway
    readiness.endpoint_seen("other.example/prod", reachable=True)
    assert readiness.gateway


def test_an_unreachable_mark_lapses_after_its_window() -> None:
    """With no new failure for DOWN_S, an unreachable endpoint no longer holds the gateway down."""
    clock = Clock()
    readiness = Readiness(clock)
    readiness.endpoint_seen("api.example/prod", reachable=False)
    clock.now += DOWN_S - 1
    assert not readiness.gateway
    clock.now += 2
    assert readiness.gateway


def test_garbage_endpoints_cannot_grow_the_table_without_bound() -> None:
    """Records naming thousands of endpoints keep at most MAX_ENDPOINTS remembered, the newest kept."""
    clock = Clock()
    readiness = Readiness(clock)
    for i in range(3 * MAX_ENDPOINTS):
        clock.now += 0.001
        readiness.endpoint_seen(f"h{i}.local/s", reachable=False)
    assert len(readiness._endpoints) <= MAX_ENDPOINTS
    assert f"h{3 * MAX_ENDPOINTS - 1}.local/s" in readiness._endpoints
    assert not readiness.gateway
