"""``$connect`` (authenticate, store the record) and ``$disconnect`` (remove it)."""

from __future__ import annotations

from typing import Any

from fanout import tokens
from fanout.errors import AuthError
from fanout.lifecycle.replies import Event, Response
from fanout.store import ConnectionStore


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
    store: ConnectionStore, event: Event, ctx: dict[str, Any], key: str, audience: str | None, ttl_s: int
) -> Response:
    """Verify the token and store the connection record; 401 without a valid token."""
    try:
        user_id = tokens.verify(token_of(event), key, audience)
    except AuthError:
        return {"statusCode": 401, "body": "Unauthorized"}
    await store.put(ctx["connectionId"], user_id, ctx["domainName"], ctx["stage"], ttl_s)
    return {"statusCode": 200}


async def disconnect(store: ConnectionStore, ctx: dict[str, Any]) -> Response:
    """Remove the record; API Gateway sends this once per closed connection, best effort."""
    await store.remove(ctx["connectionId"])
    return {"statusCode": 200}
