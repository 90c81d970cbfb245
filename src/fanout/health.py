"""``/metrics``, ``/healthz`` and ``/readyz``: one implementation for a worker process and for the pool.

``/healthz`` says the process is alive and its loop turns (ECS restarts it otherwise); ``/readyz`` says it
can do its work now (SQS, MongoDB and the management API answer). They differ on purpose: a worker
waiting for a slow dependency is alive but not ready, and must not be killed for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

#: ``/healthz`` fails when the worker loop has not ticked for this long: it is wedged.
STALL_S = 60.0

Check = Callable[[], tuple[bool, dict[str, Any]]]


class Readiness:
    """Whether SQS, MongoDB and the management API answered on their last try."""

    def __init__(self) -> None:
        self.sqs = False
        self.mongo = False
        self.gateway_down_until = 0.0  # monotonic; set when the management API refuses every post
        self.heartbeat = time.monotonic()

    @property
    def gateway(self) -> bool:
        return time.monotonic() >= self.gateway_down_until

    def gateway_down(self, for_s: float = 30.0) -> None:
        self.gateway_down_until = time.monotonic() + for_s

    def gateway_up(self) -> None:
        self.gateway_down_until = 0.0

    @property
    def ready(self) -> bool:
        return self.sqs and self.mongo and self.gateway

    def live(self) -> tuple[bool, dict[str, Any]]:
        """Alive: the worker loop ticked within ``STALL_S`` (answering at all proves the event loop runs)."""
        ok = time.monotonic() - self.heartbeat <= STALL_S
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


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port``; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
