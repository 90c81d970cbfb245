"""Routes one API Gateway WebSocket event to its handler: one dispatch table for every client action.

A handler that raises (MongoDB unreachable, a bug) is answered 500 (with ``system.error`` for a client
frame), logged and counted as a route error; no exception leaves ``Lifecycle.handle``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from pydantic_core import from_json

from fanout.config import Settings
from fanout.history import History
from fanout.inbound import InboundQueue
from fanout.lifecycle import chat, connect, forward, hello, presence, resume, topics
from fanout.lifecycle.access import AccessPolicy, load_check
from fanout.lifecycle.context import Action, Frame, Services
from fanout.lifecycle.metrics import LifecycleMetrics, route_label
from fanout.lifecycle.reconnects import COLLECTION, RecentDisconnects
from fanout.lifecycle.replies import Event, Response, error, reply
from fanout.live import Live
from fanout.logging import get_logger
from fanout.queues import LazyQueue
from fanout.store import ConnectionStore
from fanout.tickets import TicketStore
from fanout.tokens import Verifier

log = get_logger("fanout.lifecycle")

MAX_FRAME_BYTES = 32 * 1024  # UTF-8; API Gateway allows 128 KiB; no action needs more than this


async def ping(services: Services, frame: Frame) -> Response:
    """A heartbeat: the record's TTL was refreshed on the way in; answered with ``ping.pong``."""
    return reply("ping.pong", reply_to=frame.reply_to)


#: Client actions by name (the route key, or ``action`` in a ``$default`` frame).
ACTIONS: dict[str, Action] = {
    "hello": hello.hello,
    "ping": ping,
    "subscribe": topics.subscribe,
    "notification.subscribe": topics.subscribe,
    "unsubscribe": topics.unsubscribe,
    "resume": resume.resume,
    "chat.typing": chat.typing,
    "chat.ack": chat.ack,
    "presence.query": presence.query,
}


def _reply_to(body: dict[str, Any]) -> str | None:
    value = body.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


class Lifecycle:
    """Routes one API Gateway WebSocket event to its handler and returns the route response."""

    def __init__(
        self,
        store: ConnectionStore,
        settings: Settings,
        inbound: InboundQueue | None = None,
        metrics: LifecycleMetrics | None = None,
    ) -> None:
        self.metrics = metrics or LifecycleMetrics(CollectorRegistry())
        self.services = Services(
            store,
            settings,
            AccessPolicy(load_check(settings.topic_policy)),
            Verifier(settings),
            TicketStore(store.database[settings.tickets_collection]),
            inbound or InboundQueue(settings),
            (forward.DOMAIN_ACTIONS | settings.forward_actions) - set(ACTIONS),
            self.metrics,
            RecentDisconnects(store.sibling(COLLECTION)),
            History(store.database, settings),
            LazyQueue(settings, settings.queue_url, settings.queue_name),
            Live.build(store.database, settings),
        )
        self._ttl = settings.connection_ttl_s

    async def aclose(self) -> None:
        """Close the clients opened on demand (the inbound and events queues')."""
        try:
            await self.services.inbound.aclose()
        finally:
            await self.services.events.aclose()

    async def handle(self, event: Event) -> Response:
        """The route response for one event: $connect, $disconnect, or a client frame."""
        ctx = event.get("requestContext")
        if not isinstance(ctx, dict) or not isinstance(ctx.get("connectionId"), str):
            return {"statusCode": 400, "body": "Bad Request"}
        route = ctx.get("routeKey", "$default")
        try:
            if route == "$connect":
                return await connect.connect(self.services, event, ctx)
            if route == "$disconnect":
                return await connect.disconnect(self.services, ctx)
            return await self._message(str(route), event, ctx["connectionId"])
        except Exception as exc:  # the route boundary: answer, log and count; never raise to API Gateway
            return self.failed(route, exc)

    def failed(self, route: object, exc: BaseException) -> Response:
        """The answer to a route whose handler raised ``exc``: 500, logged and counted."""
        label = route_label(route)
        self.metrics.route_error(label)
        log.error("route_failed", route=label, error=type(exc).__name__, exc_info=exc)
        return failure(route)

    async def _message(self, route: str, event: Event, connection_id: str) -> Response:
        raw = event.get("body")
        # Characters first (never more than the bytes), then the bytes: "é" is two, an emoji four.
        if (
            not isinstance(raw, str)
            or len(raw) > MAX_FRAME_BYTES
            or (size := len(raw.encode("utf-8", "surrogatepass"))) > MAX_FRAME_BYTES
        ):
            return error("bad_frame", message="frames must be JSON objects of at most 32 KiB")
        try:  # pydantic's parser: no NaN/Infinity, no lone surrogates, nesting capped at 200
            body = from_json(raw, allow_inf_nan=False)
        except (ValueError, TypeError):  # TypeError: a lone surrogate as a character, not an escape
            body = None
        if not isinstance(body, dict):
            return error("bad_frame", message="frames must be JSON objects")
        reply_to = _reply_to(body)
        action = body.get("action") if route == "$default" else route
        user_id = await self.services.store.touch(connection_id, self._ttl)
        if user_id is None:
            return error("unknown_connection", reply_to)
        if not isinstance(action, str):
            return error("unknown_action", reply_to)
        handler = ACTIONS.get(action)
        if handler is None and action in self.services.forwarded:
            handler = forward.forward
        if handler is None:
            return error("unknown_action", reply_to)
        return await handler(self.services, Frame(connection_id, user_id, action, body, reply_to, size))


def failure(route: object) -> Response:
    """500 for a route that could not be handled; a client frame also gets ``system.error``."""
    if route in ("$connect", "$disconnect"):
        return {"statusCode": 500, "body": "Internal Server Error"}
    return {**error("internal_error", message="try again"), "statusCode": 500}
