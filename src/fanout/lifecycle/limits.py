"""Per-connection rate limits of the actions fanout answers itself, counted on the connection record.

The lifecycle keeps no state between invocations, so each limit is a window of ``WINDOW_S`` seconds of
wall-clock time on the record (``store.take_slot``: ``<kind>Window``, ``<kind>Count``), counted with
atomic updates. An action checks its limit after the frame's shape is validated (no I/O) and before any
work the frame would cause (the product's topic check, MongoDB reads, a record write), so a refused frame
costs only the count's updates of the record. The limit counts frames, or, for the actions whose work
grows with the ids a frame names, those ids (``cost``). A refusal is ``system.error`` ``rate_limited``
with ``max`` and ``windowS``: the clients wait ``windowS`` and send the frame again. docs/protocol.md
section 8 has the table.
"""

from __future__ import annotations

import time

from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.replies import Response, error

#: The rate window of the actions fanout answers itself (chat.typing, chat.ack, resume, hello,
#: subscribe, unsubscribe, presence.query), in seconds.
WINDOW_S = 10


def window_start(window_s: int) -> int:
    """The current rate window of ``window_s`` seconds, as the record holds it: its start, in seconds since
    the epoch. Windows of different lengths then compare (``take_slot`` moves them forward only): a
    window's number would put a 10 s window's far ahead of every 60 s window's, and a connection open
    while ``FANOUT_FORWARD_WINDOW_S`` grew was refused until it reconnected."""
    return int(time.time() // window_s) * window_s


async def limited(services: Services, frame: Frame, kind: str, limit: int, cost: int = 1) -> Response | None:
    """``rate_limited`` when ``cost`` more units of ``kind`` (frames, topics, users) would take the
    connection past ``limit`` in this window; None, and the units counted, otherwise."""
    window_s = WINDOW_S
    window = window_start(window_s)
    if await services.store.take_slot(
        frame.connection_id, kind, window, limit, max(1, cost), window_s=window_s
    ):
        return None
    return error("rate_limited", frame.reply_to, max=limit, windowS=window_s)
