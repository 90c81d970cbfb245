"""API Gateway WebSocket events as API Gateway really sends them to a Lambda proxy integration."""

from __future__ import annotations

import time
from typing import Any

API = "a1b2c3d4e5"
DOMAIN = f"{API}.execute-api.us-east-1.amazonaws.com"


def _context(route: str, event_type: str, connection_id: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": "PdL7AFD6IAMFY5Q=",
        "requestTime": "29/Nov/2026:20:00:00 +0000",
        "messageDirection": "IN",
        "stage": "production",
        "connectedAt": now,
        "requestTimeEpoch": now,
        "identity": {"userAgent": "Mozilla/5.0", "sourceIp": "203.0.113.7"},
        "requestId": "PdL7AFD6IAMFY5Q=",
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": API,
        **extra,
    }


def connect(
    connection_id: str, token: str | None = None, bearer: str | None = None, ticket: str | None = None
) -> dict[str, Any]:
    """A ``$connect`` event: the upgrade request's headers and query string."""
    headers = {
        "Host": DOMAIN,
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "X-Amzn-Trace-Id": "Root=1-6b0c8000-0123456789abcdef01234567",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _context("$connect", "CONNECT", connection_id),
        "isBase64Encoded": False,
    }
    query = {k: v for k, v in (("token", token), ("ticket", ticket)) if v is not None}
    if query:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def disconnect(connection_id: str) -> dict[str, Any]:
    """A ``$disconnect`` event (best effort: API Gateway may not send it)."""
    headers = {"Host": DOMAIN, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _context(
            "$disconnect",
            "DISCONNECT",
            connection_id,
            disconnectStatusCode=1001,
            disconnectReason="Going away",
        ),
        "isBase64Encoded": False,
    }


def message(connection_id: str, body: str | None, route: str = "$default") -> dict[str, Any]:
    """A ``MESSAGE`` event: the frame's text as ``body``; ``route`` is the action's route when one matched."""
    event: dict[str, Any] = {
        "requestContext": _context(route, "MESSAGE", connection_id, messageId="PdL7AcD6IAMCJQ="),
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
    return event
