"""A replay: the events a resuming client missed, posted in order to its one connection.

The lifecycle's ``resume`` decides what was missed and puts one message on the events queue: a
``system.replay`` body for the connection (``target.connectionIds``) with the kept events' ids in the
worker-owned ``fanout-replay`` attribute. The worker posts their frames one after another through its
own lanes, so a storm of reconnects after a deploy is paced like any other traffic, with retries.

Anyone who can send to the queue can write the attribute, so it only narrows: an event is posted only
when it is kept, not expired, and was for the connection's own user, one of its topics, or everyone.
As for live events, a frame is left out when its domain is switched off (``fanout flags``) or the
connection does not speak its payload version (logged as ``unsupported``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from fanout.gateway.client import Outcome
from fanout.history import History, KeptFrame, audience
from fanout.logging import get_logger, short_id
from fanout.worker import fate
from fanout.worker.clients import Clients
from fanout.worker.delivery import Deliverer
from fanout.worker.received import Received
from fanout.worker.result import FanoutResult

log = get_logger("fanout.worker")

#: Kept frames a replay loads at once: a forged replay naming 5,000 large events holds at most this many.
FRAMES_AT_ONCE = 100


async def replay(
    msg: Received,
    clients: Clients,
    deliverer: Deliverer,
    step: fate.Deliver,
    enabled: Callable[[str], bool] = lambda event_type: True,
    *,
    max_receives: int,
    outage_delay_s: int = fate.OUTAGE_DELAY_S,
) -> fate.Fate:
    """Post the listed events that the connection may have, in the listed order; ``enabled`` says
    whether an event type's domain is switched on; ``max_receives`` is the queue's redrive count;
    ``outage_delay_s`` how soon a replay the management API refused is tried again."""
    assert msg.body is not None
    assert msg.routing.replay is not None
    [connection_id] = msg.body.target.connection_ids
    holder = await clients.store.interests(connection_id)
    if holder is None:
        return fate.Fate("no_connections")
    conn, topics = holder
    ids, who = list(msg.routing.replay), audience(conn.user_id, topics, wide=False)
    deadline = time.monotonic() + step.budget_s
    result = FanoutResult()
    cut = 0  # listed events not reached by the deadline
    async with aclosing(_listed(clients.history, ids, who)) as listed:
        async for place, kept in listed:  # one after another: the client gets them in this order
            if time.monotonic() >= deadline:  # a slow endpoint: the rest waits for the client's next resume
                cut = (
                    len(ids) - place
                )  # (the body's expiry bounds a real replay; a forged one may name years)
                break
            if not enabled(kept.type):
                continue
            if (kept.version != 1 or conn.payloads is not None) and not conn.speaks(kept.type, kept.version):
                result.outcomes[Outcome.UNSUPPORTED_VERSION] += 1  # logged below; the client refetches
                continue
            one = await deliverer.post_frame(conn, kept.type, kept.frame, deadline, step.expires_at)
            _add(result, one)
            if one.outcomes[Outcome.OK] != 1:
                break  # the connection is gone or still failing: the client resumes again when it is back
    log.info(
        "replay_done",
        connection=short_id(connection_id),
        asked=len(msg.routing.replay),
        posted=result.attempted,
        unsupported=result.outcomes[Outcome.UNSUPPORTED_VERSION],
        cut=cut,
        outcome=result.event_outcome(),
    )
    return fate.replayed(msg, result, max_receives=max_receives, outage_delay_s=outage_delay_s)


async def _listed(
    history: History, ids: list[str], who: dict[str, Any]
) -> AsyncGenerator[tuple[int, KeptFrame]]:
    """The kept frames of the listed events that ``who`` may get, in the listed order, each with its place
    in the list; loaded ``FRAMES_AT_ONCE`` at a time, so a replay holds a bounded number of frames."""
    for start in range(0, len(ids), FRAMES_AT_ONCE):
        for kept in await history.frames(ids[start : start + FRAMES_AT_ONCE], who):
            yield ids.index(kept.id, start), kept


def _add(total: FanoutResult, one: FanoutResult) -> None:
    """Fold one post's result into the replay's."""
    total.outcomes.update(one.outcomes)
    total.attempts.update(one.attempts)
    total.retries += one.retries
    total.unposted += one.unposted
    total.failed += one.failed
    total.refused += one.refused
    total.users |= one.users
    total.refused_endpoints |= one.refused_endpoints
    total.too_large |= one.too_large
    total.reachable |= one.reachable
    total.unreachable |= one.unreachable
