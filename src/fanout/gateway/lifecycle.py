"""Connection lifecycle routes ($connect, $disconnect, ping, subscribe, $default).

The same handler serves a real API Gateway WebSocket API as a Lambda function (``lambda_handler``,
route selection ``$request.body.action``, route responses enabled so a returned ``body`` reaches the
client) and the local emulator, which builds API-Gateway-shaped events and awaits ``Lifecycle.handle``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pymongo import AsyncMongoClient

from fanout import tokens
from fanout.config import Settings
from fanout.envelope import now_iso
from fanout.errors import AuthError
from fanout.store import ConnectionStore

Event = dict[str, Any]
Response = dict[str, Any]
MAX_TOPICS = 100


def _reply(event_type: str, payload: dict[str, Any] | None = None) -> Response:
    frame = {"v": 1, "type": event_type, "payload": payload or {}, "sentAt": now_iso()}
    return {"statusCode": 200, "body": json.dumps(frame, separators=(",", ":"))}


def _token_of(event: Event) -> str | None:
    query = event.get("queryStringParameters") or {}
    if query.get("token"):
        return str(query["token"])
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    auth = str(headers.get("authorization", ""))
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Lifecycle:
    """Routes one API Gateway WebSocket event to its handler and returns the route response."""

    def __init__(self, store: ConnectionStore, settings: Settings) -> None:
        self._store = store
        self._key = settings.jwt_key()
        self._audience = settings.jwt_audience
        self._ttl = settings.connection_ttl_s

    async def handle(self, event: Event) -> Response:
        ctx = event["requestContext"]
        route = ctx.get("routeKey", "$default")
        if route == "$connect":
            return await self._connect(event, ctx)
        if route == "$disconnect":
            await self._store.remove(ctx["connectionId"])
            return {"statusCode": 200}
        return await self._message(route, event, ctx)

    async def _connect(self, event: Event, ctx: dict[str, Any]) -> Response:
        try:
            user_id = tokens.verify(_token_of(event), self._key, self._audience)
        except AuthError:
            return {"statusCode": 401, "body": "Unauthorized"}
        await self._store.put(ctx["connectionId"], user_id, ctx["domainName"], ctx["stage"], self._ttl)
        return {"statusCode": 200}

    async def _message(self, route: str, event: Event, ctx: dict[str, Any]) -> Response:
        connection_id = ctx["connectionId"]
        try:
            body = json.loads(event.get("body") or "{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _reply("system.error", {"code": "bad_frame", "message": "frames must be JSON objects"})
        action = body.get("action") if route == "$default" else route
        if not await self._store.touch(connection_id, self._ttl):
            return _reply("system.error", {"code": "unknown_connection"})
        if action == "ping":
            return _reply("ping.pong")
        if action in ("subscribe", "notification.subscribe"):
            topics = body.get("topics", [])
            if not (
                isinstance(topics, list) and all(isinstance(t, str) and 0 < len(t) <= 256 for t in topics)
            ):
                return _reply("system.error", {"code": "bad_topics"})
            if len(topics) > MAX_TOPICS:
                return _reply("system.error", {"code": "too_many_topics", "max": MAX_TOPICS})
            if topics:
                await self._store.subscribe(connection_id, topics)
            return _reply("subscribe.ok", {"topics": topics})
        return _reply("system.error", {"code": "unknown_action"})


_loop: asyncio.AbstractEventLoop | None = None
_lifecycle: Lifecycle | None = None


def lambda_handler(event: Event, context: object) -> Response:
    """AWS Lambda entry point; clients are built once per container and reused across invocations."""
    global _loop, _lifecycle
    if _loop is None or _lifecycle is None:
        settings = Settings()
        _loop = asyncio.new_event_loop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
        _lifecycle = Lifecycle(
            ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection), settings
        )
    return _loop.run_until_complete(_lifecycle.handle(event))
