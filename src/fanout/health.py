"""``/metrics``, ``/healthz`` and ``/readyz``: one implementation for a worker process and for the pool.

``/healthz`` says the process is alive and its loop turns (ECS restarts it otherwise); ``/readyz`` says it
can do its work now (SQS, MongoDB and the management API answer). They differ on purpose: a worker
waiting for a slow dependency is alive but not ready, and must not be killed for it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fanout.errors import ConfigError

#: ``/healthz`` fails when the worker loop has not ticked for this long: it is wedged.
STALL_S = 60.0
#: How long an endpoint's last answer counts: unreachable for a while, reachable for longer (an API
#: that is idle between events is still up).
DOWN_S = 30.0
UP_S = 600.0
#: Endpoints remembered: connection records name them, so garbage records cannot grow this without bound.
MAX_ENDPOINTS = 1024

Check = Callable[[], tuple[bool, dict[str, Any]]]


class Readiness:
    """Whether SQS, MongoDB and the management API answered on their last try.

    The management API is tracked per endpoint (``{domainName}/{stage}`` of the records posted to): it
    is not ready only while every endpoint seen recently is unreachable, so one record naming a dead
    endpoint cannot mark the gateway down for the others.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self.sqs = False
        self.mongo = False
        self._clock = clock
        self._endpoints: dict[str, tuple[bool, float]] = {}  # endpoint -> (answered, when)
        self.heartbeat = time.monotonic()  # the worker loop sets it

    def endpoint_seen(self, endpoint: str, *, reachable: bool) -> None:
        """Record that posts to ``endpoint`` got an HTTP answer, or found it unreachable."""
        now = self._clock()
        if endpoint not in self._endpoints and len(self._endpoints) >= MAX_ENDPOINTS:
            self._endpoints = {e: v for e, v in self._endpoints.items() if self._counts(v, now)}
            if len(self._endpoints) >= MAX_ENDPOINTS:  # all recent: forget the oldest half
                kept = sorted(self._endpoints.items(), key=lambda item: item[1][1])[MAX_ENDPOINTS // 2 :]
                self._endpoints = dict(kept)
        self._endpoints[endpoint] = (reachable, now)

    @staticmethod
    def _counts(state: tuple[bool, float], now: float) -> bool:
        reachable, at = state
        return now - at < (UP_S if reachable else DOWN_S)

    @property
    def gateway(self) -> bool:
        now = self._clock()
        down = False
        for state in self._endpoints.values():
            if self._counts(state, now):
                if state[0]:
                    return True
                down = True
        return not down

    @property
    def ready(self) -> bool:
        return self.sqs and self.mongo and self.gateway

    def live(self) -> tuple[bool, dict[str, Any]]:
        """Alive: the worker loop ticked within ``stall_s`` (answering at all proves the event loop runs)."""
        ok = time.monotonic() - self.heartbeat <= self.stall_s
        return ok, {"ok": ok}

    def check(self) -> tuple[bool, dict[str, Any]]:
        """Ready, with each dependency's state."""
        return self.ready, {"sqs": self.sqs, "mongo": self.mongo, "gateway": self.gateway}


def health_app(registry: Callable[[], CollectorRegistry], live: Check, ready: Check) -> web.Application:
    """An aiohttp app serving the three endpoints; ``registry`` builds the registry to export."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def answer(check: Check) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            ok, body = check()
            return web.json_response(body, status=200 if ok else 503)

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", answer(live))
    app.router.add_get("/readyz", answer(ready))
    return app


async def serve(
    app: web.Application,
    host: str,
    port: int,
    shutdown_s: float = 60,
    variables: str = "FANOUT_METRICS_HOST, FANOUT_METRICS_PORT",
) -> web.AppRunner:
    """Serve ``app`` on ``host:port``; the caller cleans the runner up. ``ConfigError`` naming
    ``variables`` when it cannot listen there (the port taken, say by a worker and a relay on one host,
    or a host that is no address of this machine)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_s)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as exc:
        await runner.cleanup()
        # errno's own words ("Address already in use"); a resolver's error has its text, no errno of the OS
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot listen on {host}:{port} ({variables}): {reason}") from None
    return runner


async def until_signalled() -> None:
    """Return on the first SIGTERM or SIGINT: the main loop of a server process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
