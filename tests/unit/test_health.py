"""Readiness of the management API, tracked per endpoint: one dead endpoint is not an outage."""

from __future__ import annotations

from fanout.health import DOWN_S, MAX_ENDPOINTS, UP_S, Readiness


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
