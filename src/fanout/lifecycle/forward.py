"""Client actions the domain owns (``chat.send``, ``chat.read``, ``FANOUT_FORWARD_ACTIONS``): forwarded to
the inbound queue, acknowledged with ``system.accepted`` and a request id.

The domain service does the work and answers the one connection through the normal publish path
(``target.connectionIds``). Forwarded frames are bounded in size (``FANOUT_FORWARD_MAX_BYTES``) and in
rate per connection (``FANOUT_FORWARD_RATE`` per ``FANOUT_FORWARD_WINDOW_S``); the lifecycle keeps no
state between invocations, so the rate window lives on the connection record, counted atomically.
"""

from __future__ import annotations

from ulid import ULID

from fanout.envelope import now_iso
from fanout.inbound import InboundMessage
from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.limits import window_start
from fanout.lifecycle.replies import Response, error, reply
from fanout.logging import get_logger, short_id

log = get_logger("fanout.lifecycle")

#: Actions the domain services own whatever the settings say; FANOUT_FORWARD_ACTIONS adds more.
DOMAIN_ACTIONS = frozenset({"chat.send", "chat.read"})


def new_request_id() -> str:
    """A unique, time-sortable request id such as ``req_01JD...``."""
    return f"req_{ULID()}"


async def forward(services: Services, frame: Frame) -> Response:
    """Put the frame on the inbound queue with the verified identity; acknowledge it."""
    s = services.settings
    if frame.size > s.forward_max_bytes:
        return error("frame_too_large", frame.reply_to, max=s.forward_max_bytes)
    window = window_start(s.forward_window_s)
    if not await services.store.take_slot(
        frame.connection_id, "forward", window, s.forward_rate, window_s=s.forward_window_s
    ):
        return error("rate_limited", frame.reply_to, max=s.forward_rate, windowS=s.forward_window_s)
    message = InboundMessage(
        request_id=new_request_id(),
        action=frame.action,
        user_id=frame.user_id,
        connection_id=frame.connection_id,
        body=frame.body,
        received_at=now_iso(),
        reply_to=frame.reply_to,
    )
    try:
        await services.inbound.send(message)
    except Exception as exc:  # the queue is the domain's door: tell the client, keep the socket
        connection = short_id(frame.connection_id)
        log.warning("forward_failed", action=frame.action, connection=connection, error=type(exc).__name__)
        return error("forward_failed", frame.reply_to, message="try again later")
    return reply("system.accepted", {"action": frame.action, "requestId": message.request_id}, frame.reply_to)
