"""A replay: the events a resuming client missed, posted in order to its one connection.

The lifecycle's ``resume`` decides what was missed and puts one message on the events queue: a
``system.replay`` body for the connection (``target.connectionIds``) with the kept events' ids in the
worker-owned ``fanout-replay`` attribute. The worker posts their frames one after another through its
own lanes, so a storm of reconnects after a deploy is paced like any other traffic, with retries.

Anyone who can send to the queue can write the attribute, so it only narrows: an event is posted only
when it is kept, not expired, and was for the connection's own user, one of its topics, or everyone.
"""

from __future__ import annotations

import time

from fanout.history import audience
from fanout.logging import get_logger, short_id
from fanout.worker import fate
from fanout.worker.clients import Clients
from fanout.worker.delivery import Deliverer
from fanout.worker.received import Received

log = get_logger("fanout.worker")


async def replay(msg: Received, clients: Clients, deliverer: Deliverer, step: fate.Deliver) -> fate.Fate:
    """Post the listed events that the connection may have, in the listed order."""
    assert msg.body is not None
    assert msg.routing.replay is not None
    [connection_id] = msg.body.target.connection_ids
    holder = await clients.store.interests(connection_id)
    if holder is None:
        return fate.Fate("no_connections")
    conn, topics = holder
    frames = await clients.history.frames(
        list(msg.routing.replay), audience(conn.user_id, topics, wide=False)
    )
    deadline = time.monotonic() + step.budget_s
    result = await deliverer.deliver_in_order(conn, [(t, f) for _, t, f in frames], deadline, step.expires_at)
    log.info(
        "replay_done",
        connection=short_id(connection_id),
        asked=len(msg.routing.replay),
        posted=result.outcomes.total(),
        outcome=result.event_outcome(),
    )
    return fate.replayed(result)
