"""Hands a resume's missed events to the worker: one message on the events queue for the one connection.

Why the worker posts them rather than this handler: a route response carries one frame, and posting the
rest from here would need the management API in the Lambda (``execute-api`` permission, a signer, an
HTTP client) and would post outside the worker's pacing: after a deploy, every client resumes at once.
Through the queue the replay shares the worker's lanes, its retries and its adaptive rate limit, and the
Lambda only needs ``sqs:SendMessage`` on the events queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ulid import ULID

from fanout import attributes
from fanout.envelope import QueueBody, now_iso, validate
from fanout.queues import LazyQueue

#: A replay older than this is dropped: by then the client has resumed again or given up.
REPLAY_TTL_S = 60


def replay_body(connection_id: str, now: datetime | None = None) -> QueueBody:
    """The body of a replay message: ``system.replay`` for one connection, expiring soon."""
    expires = (now or datetime.now(UTC)) + timedelta(seconds=REPLAY_TTL_S)
    return validate(
        {
            "v": 1,
            "id": f"rpl_{ULID()}",
            "type": "system.replay",
            "payload": {},
            "sentAt": now_iso(),
            "target": {"connectionIds": [connection_id]},
            "meta": {"expiresAt": expires.isoformat()},
        }
    )


async def send(events: LazyQueue, connection_id: str, event_ids: Sequence[str]) -> None:
    """Ask the worker to post ``event_ids``' kept frames, in this order, to the connection."""
    body = replay_body(connection_id)
    await events.send(
        body.to_json(),
        # a group per connection: a replay never waits behind another stream
        group=connection_id,
        dedup=body.id,
        MessageAttributes=attributes.replay(event_ids),
    )
