"""The worker's HTTP side: ``/metrics``, ``/healthz`` (event loop responsive), ``/readyz`` (deps answer)."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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


def health_app(registry_factory: Callable[[], CollectorRegistry], readiness: Readiness) -> web.Application:
    """An aiohttp app serving the three endpoints; ``registry_factory`` builds the registry to export."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry_factory())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        # Answering at all proves the event loop runs; the heartbeat proves the worker loop does too.
        stalled = time.monotonic() - readiness.heartbeat > 60
        return web.json_response({"ok": not stalled}, status=503 if stalled else 200)

    async def readyz(_: web.Request) -> web.Response:
        body = {"sqs": readiness.sqs, "mongo": readiness.mongo, "gateway": readiness.gateway}
        return web.json_response(body, status=200 if readiness.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
