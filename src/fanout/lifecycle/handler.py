"""Routes one API Gateway WebSocket event to its handler: one dispatch table for every client action."""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

from fanout.config import Settings
from fanout.history import History
from fanout.lifecycle import connect, resume, topics
from fanout.lifecycle.access import AccessPolicy, load_check
from fanout.lifecycle.context import Action, Frame, Services
from fanout.lifecycle.replays import ReplayQueue
from fanout.lifecycle.replies import Event, Response, error, reply
from fanout.store import ConnectionStore

MAX_FRAME_CHARS = 32 * 1024  # API Gateway allows 128 KiB; no action needs more than this


async def ping(services: Services, frame: Frame) -> Response:
    """A heartbeat: the record's TTL was refreshed on the way in; answered with ``ping.pong``."""
    return reply("ping.pong", reply_to=frame.reply_to)


#: Client actions by name (the route key, or ``action`` in a ``$default`` frame).
ACTIONS: dict[str, Action] = {
    "ping": ping,
    "subscribe": topics.subscribe,
    "notification.subscribe": topics.subscribe,
    "unsubscribe": topics.unsubscribe,
    "resume": resume.resume,
}


def _reply_to(body: dict[str, Any]) -> str | None:
    value = body.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


class Lifecycle:
    """Routes one API Gateway WebSocket event to its handler and returns the route response."""

    def __init__(self, store: ConnectionStore, settings: Settings) -> None:
        self.services = Services(
            store,
            settings,
            AccessPolicy(load_check(settings.topic_policy)),
            History(store.database, settings),
            ReplayQueue(settings),
        )
        self._key = settings.jwt_key()
        self._audience = settings.jwt_audience
        self._ttl = settings.connection_ttl_s

    async def close(self) -> None:
        """Close what the actions opened (the replay queue's SQS client)."""
        await self.services.replays.close()

    async def handle(self, event: Event) -> Response:
        """The route response for one event: $connect, $disconnect, or a client frame."""
        ctx = event.get("requestContext")
        if not isinstance(ctx, dict) or not isinstance(ctx.get("connectionId"), str):
            return {"statusCode": 400, "body": "Bad Request"}
        route = ctx.get("routeKey", "$default")
        store = self.services.store
        if route == "$connect":
            return await connect.connect(store, event, ctx, self._key, self._audience, self._ttl)
        if route == "$disconnect":
            return await connect.disconnect(store, ctx)
        return await self._message(str(route), event, ctx["connectionId"])

    async def _message(self, route: str, event: Event, connection_id: str) -> Response:
        raw = event.get("body")
        if not isinstance(raw, str) or len(raw) > MAX_FRAME_CHARS:
            return error("bad_frame", message="frames must be JSON objects of at most 32 KiB")
        try:  # pydantic's parser: no NaN/Infinity, no lone surrogates, nesting capped at 200
            body = from_json(raw, allow_inf_nan=False)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error("bad_frame", message="frames must be JSON objects")
        reply_to = _reply_to(body)
        action = body.get("action") if route == "$default" else route
        user_id = await self.services.store.touch(connection_id, self._ttl)
        if user_id is None:
            return error("unknown_connection", reply_to)
        handler = ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            return error("unknown_action", reply_to)
        return await handler(self.services, Frame(connection_id, user_id, str(action), body, reply_to))
