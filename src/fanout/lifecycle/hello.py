"""``hello``: the client's first frame. It names the protocol versions and the payload versions the client
understands; the answer, ``system.connected``, tells the client its connection id and the server's terms.

The connection id is what the web app sends as ``excludeConnectionIds`` with a mutation, so the tab that
caused a change is not sent its echo. What the connection speaks is stored on its record, where the
worker finds it with the record itself: an event whose payload version the client does not speak is not
sent to it (``worker.delivery``).
"""

from __future__ import annotations

import re
from typing import Any

from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.limits import limited
from fanout.lifecycle.replies import Response, error, reply

#: Protocol versions this server speaks; a client gets the highest one both sides name.
SERVER_PROTOCOLS = (1,)
#: Seconds between the client's ``ping`` frames (API Gateway closes a connection idle for 10 minutes).
HEARTBEAT_S = 30
#: hello frames per connection per 10-second window: a client sends one per connection (a later one
#: only to declare other payload versions); each writes the record.
HELLOS_PER_WINDOW = 5
MAX_PROTOCOLS = 16
MAX_PAYLOAD_TYPES = 200
MAX_VERSIONS = 16
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


def _versions(value: Any, most: int, top: int) -> list[int] | None:
    """A non-empty list of at most ``most`` whole numbers from 1 to ``top`` (not booleans), deduplicated."""
    if not isinstance(value, list) or not 0 < len(value) <= most:
        return None
    if not all(type(v) is int and 1 <= v <= top for v in value):
        return None
    return sorted(set(value))


def _payloads(value: Any) -> dict[str, list[int]] | None:
    """The declared payload versions; None when absent, ``ValueError`` when malformed."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_PAYLOAD_TYPES:
        raise ValueError("payloads")
    out: dict[str, list[int]] = {}
    for event_type, versions in value.items():
        checked = _versions(versions, MAX_VERSIONS, 1000)
        if len(event_type) > 128 or not _TYPE.fullmatch(event_type) or checked is None:
            raise ValueError("payloads")
        out[event_type] = checked
    return out


def _resume_supported() -> bool:
    from fanout.lifecycle.handler import ACTIONS  # the table imports this module: look it up when asked

    return "resume" in ACTIONS


async def hello(services: Services, frame: Frame) -> Response:
    """Agree on a protocol, store what the connection speaks, answer ``system.connected``."""
    protocols = _versions(frame.body.get("protocols", [1]), MAX_PROTOCOLS, 1_000_000)
    try:
        payloads = _payloads(frame.body.get("payloads"))
    except ValueError:
        protocols = payloads = None
    if protocols is None:
        return error(
            "bad_hello",
            frame.reply_to,
            message='"protocols" is a list of versions, "payloads" maps event types to lists of versions',
        )
    common = set(protocols) & set(SERVER_PROTOCOLS)
    if not common:
        return error("unsupported_protocol", frame.reply_to, supported=list(SERVER_PROTOCOLS))
    protocol = max(common)
    if refused := await limited(services, frame, "hello", HELLOS_PER_WINDOW):
        return refused
    if not await services.store.hello(frame.connection_id, protocol, payloads):
        return error("unknown_connection", frame.reply_to)
    answer = {
        "connectionId": frame.connection_id,
        "userId": frame.user_id,
        "protocol": protocol,
        "heartbeatS": HEARTBEAT_S,
        "resume": _resume_supported(),
    }
    return reply("system.connected", answer, frame.reply_to)
