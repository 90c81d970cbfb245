"""``$connect`` (authenticate, store the record) and ``$disconnect`` (remove it), each counted."""

from __future__ import annotations

from typing import Any

from fanout import tokens
from fanout.errors import AuthError
from fanout.lifecycle.context import Services
from fanout.lifecycle.replies import Event, Response


def token_of(event: Event) -> str | None:
    """The connect token: the ``token`` query parameter, else an ``Authorization: Bearer`` header."""
    query = event.get("queryStringParameters") or {}
    if isinstance(query, dict) and isinstance(query.get("token"), str) and query["token"]:
        return str(query["token"])
    headers = event.get("headers") or {}
    if not isinstance(headers, dict):
        return None
    auth = next((str(v) for k, v in headers.items() if str(k).lower() == "authorization"), "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def connect(
    services: Services, event: Event, ctx: dict[str, Any], key: str, audience: str | None
) -> Response:
    """Verify the token and store the connection record; 401 without a valid token."""
    try:
        user_id = tokens.verify(token_of(event), key, audience)
    except AuthError:
        services.metrics.unauthorized.inc()
        return {"statusCode": 401, "body": "Unauthorized"}
    ttl_s = services.settings.connection_ttl_s
    await services.store.put(ctx["connectionId"], user_id, ctx["domainName"], ctx["stage"], ttl_s)
    services.metrics.connects.inc()
    if await services.disconnects.is_reconnect(user_id):
        services.metrics.reconnects.inc()
    return {"statusCode": 200}


async def disconnect(services: Services, ctx: dict[str, Any]) -> Response:
    """Remove the record and note when its user left; API Gateway sends this once per closed connection,
    best effort."""
    user_id = await services.store.remove(ctx["connectionId"])
    if user_id is not None:
        await services.disconnects.note(user_id)
    services.metrics.disconnects.inc()
    return {"statusCode": 200}
