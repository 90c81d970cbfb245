"""``$connect`` (authenticate, store the record) and ``$disconnect`` (remove it), each counted.

A client proves who it is with a ticket (``?ticket=``, single-use, minted by a domain service) or a token
(``?token=`` or ``Authorization: Bearer``: HS256 locally, the product's own RS256/ES256 tokens through
its JWKS). A frame never says who it is: the record's ``userId`` is what every later action uses.
"""

from __future__ import annotations

from typing import Any

from fanout.errors import AuthError
from fanout.lifecycle import presence
from fanout.lifecycle.context import Services
from fanout.lifecycle.replies import Event, Response

UNAUTHORIZED: Response = {"statusCode": 401, "body": "Unauthorized"}
TOO_MANY: Response = {"statusCode": 429, "body": "Too Many Connections"}
#: A connection counts against its user's limit while its record was written within this long: a client
#: pings every 30 s (a hidden browser tab's timers still run once a minute), so a record unseen for six
#: heartbeats is a socket gone without its ``$disconnect``, or half-open, and must not lock its user out.
LIVE_WITHIN_S = 180


def _query(event: Event, name: str) -> str | None:
    query = event.get("queryStringParameters") or {}
    value = query.get(name) if isinstance(query, dict) else None
    return value if isinstance(value, str) and value else None


def token_of(event: Event) -> str | None:
    """The connect token: the ``token`` query parameter, else an ``Authorization: Bearer`` header."""
    if token := _query(event, "token"):
        return token
    headers = event.get("headers") or {}
    if not isinstance(headers, dict):
        return None
    auth = next((str(v) for k, v in headers.items() if str(k).lower() == "authorization"), "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _user(services: Services, event: Event) -> str | None:
    """Who connects: a ticket when one is presented (it alone decides), else a token if tokens are on."""
    query = event.get("queryStringParameters") or {}
    if isinstance(query, dict) and "ticket" in query:
        return await services.tickets.redeem(_query(event, "ticket"))
    if not services.settings.jwt_connect:
        return None
    try:
        return await services.verifier.verify(token_of(event))
    except AuthError:
        return None


async def connect(services: Services, event: Event, ctx: dict[str, Any]) -> Response:
    """Verify the ticket or token and store the connection record; 401 without a valid one, 429 past the
    user's limit of live connections."""
    user_id = await _user(services, event)
    if user_id is None:
        services.metrics.unauthorized.inc()
        return UNAUTHORIZED
    store, connection_id, ttl_s = services.store, ctx["connectionId"], services.settings.connection_ttl_s
    await store.put(connection_id, user_id, ctx["domainName"], ctx["stage"], ttl_s)
    if await _over_limit(services, user_id, connection_id):
        await store.remove(connection_id)
        services.metrics.refused.inc()
        return TOO_MANY
    services.metrics.connects.inc()
    if await services.disconnects.is_reconnect(user_id):
        services.metrics.reconnects.inc()
    await presence.connected(services, user_id)
    return {"statusCode": 200}


async def _over_limit(services: Services, user_id: str, connection_id: str) -> bool:
    """The user holds ``FANOUT_MAX_CONNECTIONS_PER_USER`` other live connections: every connection
    multiplies what the per-connection rate limits let the user do, and every fan-out to them. Counted
    once this one's record is stored, so of connects arriving together the later ones see the earlier and
    none passes the limit (at worst, all of them are refused and try again)."""
    limit = services.settings.max_connections_per_user
    if not limit:
        return False
    others = await services.store.others_live(
        connection_id, user_id, seen_within_s=LIVE_WITHIN_S, at_most=limit
    )
    return others >= limit


async def disconnect(services: Services, ctx: dict[str, Any]) -> Response:
    """Remove the record and note when its user left; API Gateway sends this once per closed connection,
    best effort."""
    user_id = await services.store.remove(ctx["connectionId"])
    if user_id is not None:
        await services.disconnects.note(user_id)
        await presence.disconnected(services, user_id)
    services.metrics.disconnects.inc()
    return {"statusCode": 200}
