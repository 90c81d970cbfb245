"""Route responses: the envelopes a client gets back for its frames."""

from __future__ import annotations

import json
from typing import Any

from fanout.envelope import now_iso

Event = dict[str, Any]
Response = dict[str, Any]


def reply(event_type: str, payload: dict[str, Any] | None = None, reply_to: str | None = None) -> Response:
    """A route response carrying one envelope; ``reply_to`` echoes the frame's ``id``."""
    frame: dict[str, Any] = {"v": 1, "type": event_type, "payload": payload or {}, "sentAt": now_iso()}
    if reply_to is not None:
        frame["replyTo"] = reply_to
    return {"statusCode": 200, "body": json.dumps(frame, separators=(",", ":"))}


def error(code: str, reply_to: str | None = None, **details: Any) -> Response:
    """A ``system.error`` answer: ``code`` names what was wrong, never with the client's input echoed."""
    return reply("system.error", {"code": code, **details}, reply_to)
