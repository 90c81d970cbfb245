"""The local API Gateway WebSocket emulator: a real WebSocket server plus the ``@connections`` API.

WebSocket clients connect at ``ws://HOST:PORT/{stage}``; every lifecycle step is an API-Gateway-shaped
event handed to the same ``Lifecycle`` a Lambda would run. The management API answers as API Gateway
does (410 GoneException, 413 PayloadTooLargeException, 403 for a wrong stage or a request without
SigV4 credentials) and can inject faults for tests and benchmarks (``PUT /_emulator/faults``; ``only``
narrows them to the posts whose frame contains a text, such as one event's id).

Virtual connections stand in for sockets this machine cannot hold (a 100,000-connection broadcast
against a 20,000 file limit): a POST to an id starting with ``virt.`` (API Gateway's ids and the
emulator's own never hold a '.') is answered 200 and counted as ``virtual``, with no socket. Only POST
knows them; they take the same checks and injected faults as any other post.

On SIGTERM it closes its sockets, waits up to ``SETTLE_S`` for the route calls still running (the
$disconnects of those sockets and of clients that left just before), cancels the rest and hands nothing
more to the lifecycle: its MongoDB client closes next. ``gateway_stopped`` counts both
(``cancelled_stopping``, ``skipped_stopping``); their records are left to their TTL, as a dropped
socket's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fanout import health
from fanout.attributes import CONNECTION_ID
from fanout.config import Settings
from fanout.envelope import MAX_FRAME_BYTES
from fanout.lifecycle import ACTIONS, Lifecycle
from fanout.local.emulator_metrics import GatewayMetrics
from fanout.logging import get_logger
from fanout.store import ConnectionStore, mongo_client

log = get_logger("fanout.gateway")

#: Like a deployed API: one route per action the lifecycle handles, everything else on $default.
CLIENT_ROUTES = frozenset(ACTIONS)
#: A query parameter by which a test chooses its socket's connection id (API Gateway assigns ids itself),
#: e.g. to open the socket of a record written beforehand.
CHOSEN_ID = "_emulatorConnectionId"
#: Connection ids with this prefix are virtual: a POST to one is answered 200 and counted, no socket.
VIRTUAL_PREFIX = "virt."
#: How long a stopping emulator waits for the route calls still running (a closed client's $disconnect)
#: before it cancels them: its MongoDB client closes next, and a call after that would fail.
SETTLE_S = 1.0
#: The answer to a route that arrives while the emulator stops: not handed to the lifecycle.
_STOPPING = {"statusCode": 503, "body": ""}


@dataclass
class Faults:
    """Shares of management-API POSTs that fail, and added latency; all zero by default."""

    throttle: float = 0.0  # answer 429 LimitExceededException
    error: float = 0.0  # answer 500 InternalServerErrorException
    timeout: float = 0.0  # deliver, then hang for hang_s (the caller's outcome is unknown)
    drop: float = 0.0  # close the socket abruptly without $disconnect: a stale record stays
    latency_ms: float = 0.0
    hang_s: float = 10.0
    only: str = ""  # when set, faults (latency too) apply only to posts whose frame contains this text

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown fault {key!r}; known: {sorted(names)}")
            if key == "only":
                if not isinstance(value, str):
                    raise ValueError(f"only must be a string: {value!r}")
                self.only = value
                continue
            number = float(value)
            if number < 0 or (key not in ("latency_ms", "hang_s") and number > 1):
                raise ValueError(f"{key} out of range: {value!r}")
            setattr(self, key, number)


_NO_FAULTS = Faults()


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    connected_at: float
    last_active: float
    source_ip: str
    user_agent: str
    transport: Any
    dropped: bool = False


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": kind})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Emulator:
    """Holds the open sockets and serves both the WebSocket and the management API."""

    def __init__(self, lifecycle: Lifecycle, stage: str, domain_name: str, faults: Faults | None = None):
        self.lifecycle = lifecycle
        self.stage = stage
        self.domain_name = domain_name
        self.faults = faults or Faults()
        self.sockets: dict[str, _Socket] = {}
        self.counts: dict[str, int] = {}
        self.stopping = False
        self._calls: dict[asyncio.Task[Any], asyncio.Future[None]] = {}  # route calls running, by task
        # One registry for /metrics: the emulator's own counters beside the lifecycle's fanout_lifecycle_*.
        self.metrics = GatewayMetrics(lifecycle.metrics.registry)
        self.metrics.open_connections.set_function(lambda: len(self.sockets))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * MAX_FRAME_BYTES)
        app.router.add_get("/_emulator/faults", self._get_faults)
        app.router.add_put("/_emulator/faults", self._put_faults)
        app.router.add_get("/_emulator/stats", self._stats)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/{stage}/@connections/{connection_id}", self._manage)
        app.router.add_get("/{stage}", self._websocket)
        return app

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self.metrics.count(key)

    async def _route(self, event: dict[str, Any]) -> dict[str, Any]:
        """Hand ``event`` to the lifecycle, so that a stopping emulator can wait for the call (``settle``)."""
        task = asyncio.current_task()
        if self.stopping or task is None:
            self._count("skipped_stopping")
            return _STOPPING
        done = self._calls[task] = asyncio.get_running_loop().create_future()
        try:
            return await self.lifecycle.handle(event)
        finally:
            done.set_result(None)
            del self._calls[task]

    async def settle(self, timeout_s: float = SETTLE_S) -> None:
        """Start no more route calls; wait up to ``timeout_s`` for those running, then cancel the rest
        (counted as ``cancelled_stopping``): the store they use is about to close."""
        self.stopping = True
        calls = dict(self._calls)
        if calls:
            await asyncio.wait(calls.values(), timeout=timeout_s)
        for task, done in calls.items():
            if not done.done():
                task.cancel()
                self._count("cancelled_stopping")

    def _event(self, route: str, event_type: str, connection_id: str, request: web.Request) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        return {
            "requestContext": {
                "routeKey": route,
                "eventType": event_type,
                "connectionId": connection_id,
                "domainName": self.domain_name,
                "stage": self.stage,
                "apiId": "local",
                "requestTimeEpoch": now_ms,
                "connectedAt": now_ms,
                "identity": {"sourceIp": request.remote or "127.0.0.1"},
            },
            "isBase64Encoded": False,
        }

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["stage"] != self.stage:
            return _error(403, "ForbiddenException", "Forbidden")
        connection_id = request.query.get(CHOSEN_ID) or secrets.token_urlsafe(12)
        chosen_virtual = connection_id.startswith(VIRTUAL_PREFIX)  # a socket never takes a virtual id
        if not CONNECTION_ID.fullmatch(connection_id) or connection_id in self.sockets or chosen_virtual:
            return _error(409, "ConflictException", "connection id invalid or in use")
        event = self._event("$connect", "CONNECT", connection_id, request)
        event["queryStringParameters"] = {k: v for k, v in request.query.items() if k != CHOSEN_ID}
        event["headers"] = dict(request.headers)
        answer = await self._route(event)
        if answer.get("statusCode") != 200:
            self._count("connect_rejected")
            return web.Response(status=answer.get("statusCode", 500), text=answer.get("body", ""))
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        now = time.time()
        self.sockets[connection_id] = _Socket(
            ws,
            now,
            now,
            request.remote or "127.0.0.1",
            request.headers.get("User-Agent", ""),
            request.transport,
        )
        self._count("connected")
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                self.sockets[connection_id].last_active = time.time()
                await self._frame(connection_id, msg.data, request, ws)
        finally:
            gone = self.sockets.pop(connection_id, None)
            if gone is None or not gone.dropped:  # a dropped socket leaves its record behind, stale
                with contextlib.suppress(Exception):  # best effort, as API Gateway's own $disconnect is
                    await self._route(self._event("$disconnect", "DISCONNECT", connection_id, request))
            self._count("disconnected")
        return ws

    async def _frame(
        self, connection_id: str, data: str, request: web.Request, ws: web.WebSocketResponse
    ) -> None:
        try:
            action = json.loads(data).get("action")
        except (ValueError, AttributeError, RecursionError):
            action = None
        route = action if isinstance(action, str) and action in CLIENT_ROUTES else "$default"
        event = self._event(route, "MESSAGE", connection_id, request)
        event["body"] = data
        try:
            answer = await self._route(event)
        except Exception as exc:  # as API Gateway does when an integration fails: tell the client
            log.warning("route_failed", route=route, error=type(exc).__name__)
            answer = {"statusCode": 500, "body": json.dumps({"message": "Internal server error"})}
        if answer.get("body") and not ws.closed:
            await ws.send_str(answer["body"])

    async def _manage(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["stage"] != self.stage:
            self._count("forbidden")
            return _error(403, "ForbiddenException", "Forbidden")
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            self._count("forbidden")
            return _error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        socket = self.sockets.get(request.match_info["connection_id"])
        if request.method == "POST":
            virtual = request.match_info["connection_id"].startswith(VIRTUAL_PREFIX)
            return await self._post(socket, request, virtual)
        if socket is None:
            return _error(410, "GoneException", "Gone")
        if request.method == "GET":
            return web.json_response(
                {
                    "connectedAt": _iso(socket.connected_at),
                    "lastActiveAt": _iso(socket.last_active),
                    "identity": {"sourceIp": socket.source_ip, "userAgent": socket.user_agent},
                }
            )
        if request.method == "DELETE":
            await socket.ws.close()
            return web.Response(status=204)
        return _error(405, "MethodNotAllowed", "Method Not Allowed")

    async def _post(
        self, socket: _Socket | None, request: web.Request, virtual: bool = False
    ) -> web.StreamResponse:
        body = await request.read()
        if len(body) > MAX_FRAME_BYTES:
            self._count("too_large")
            return _error(413, "PayloadTooLargeException", "Request entity too large")
        faults = self.faults
        if faults.only and faults.only.encode() not in body:  # a test's faults for one frame: not this one
            faults = _NO_FAULTS
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        roll = random.random()
        if roll < faults.throttle:
            self._count("throttled")
            return _error(429, "LimitExceededException", "Rate exceeded")
        roll -= faults.throttle
        if roll < faults.error:
            self._count("server_error")
            return _error(500, "InternalServerErrorException", "Internal server error")
        roll -= faults.error
        if virtual:
            self._count("virtual")
            return web.Response(status=200)
        if socket is None or socket.dropped or socket.ws.closed:
            self._count("gone")
            return _error(410, "GoneException", "Gone")
        if roll < faults.drop:
            self._count("dropped")
            socket.dropped = True
            if socket.transport is not None:
                socket.transport.abort()
            return _error(410, "GoneException", "Gone")
        roll -= faults.drop
        try:
            await socket.ws.send_str(body.decode())
        except ConnectionError:
            self._count("gone")
            return _error(410, "GoneException", "Gone")
        self._count("delivered")
        if roll < faults.timeout:
            self._count("hung")
            await asyncio.sleep(faults.hang_s)
        return web.Response(status=200)

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.faults))

    async def _put_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.update(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.faults))

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"open": len(self.sockets), "counts": self.counts})


async def serve(settings: Settings, faults: Faults | None = None) -> None:
    """Run the emulator until SIGTERM/SIGINT."""
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    await store.ensure_indexes()
    lifecycle = Lifecycle(store, settings)
    await lifecycle.services.tickets.ensure_indexes()
    domain = f"{settings.gateway_host}:{settings.gateway_port}"
    emulator = Emulator(lifecycle, settings.gateway_stage, domain, faults)
    runner = await health.serve(
        emulator.app(),
        settings.gateway_host,
        settings.gateway_port,
        shutdown_s=2,
        variables="FANOUT_GATEWAY_HOST, FANOUT_GATEWAY_PORT",
    )
    log.info("gateway_started", websocket=f"ws://{domain}/{settings.gateway_stage}")
    try:
        await health.until_signalled()
    finally:
        for entry in list(emulator.sockets.values()):
            await entry.ws.close(code=1001, message=b"server shutting down")
        await emulator.settle()  # the $disconnects of the sockets just closed, and of clients gone before
        await runner.cleanup()
        await lifecycle.aclose()
        await client.close()
        log.info("gateway_stopped", counts=emulator.counts)
