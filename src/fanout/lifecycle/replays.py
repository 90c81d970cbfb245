"""Hands a resume's missed events to the worker: one message on the events queue for the one connection.

Why the worker posts them rather than this handler: a route response carries one frame, and posting the
rest from here would need the management API in the Lambda (``execute-api`` permission, a signer, an
HTTP client) and would post outside the worker's pacing: after a deploy, every client resumes at once.
Through the queue the replay shares the worker's lanes, its retries and its adaptive rate limit, and the
Lambda only needs ``sqs:SendMessage`` on the events queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

from aiobotocore.session import get_session
from ulid import ULID

from fanout import attributes, queues
from fanout.config import Settings
from fanout.envelope import QueueBody, now_iso, validate

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


class ReplayQueue:
    """Sends replay messages. The SQS client is opened on the first resume that replays and kept for the
    process (most lifecycle invocations never resume, so a cold start does not pay it)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = AsyncExitStack()
        self._sqs: Any = None
        self._url = ""
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        async with self._opening:
            if self._sqs is None:
                sqs = await self._stack.enter_async_context(
                    get_session().create_client("sqs", **self._settings.aws_client_kwargs())
                )
                self._url = await queues.aurl(sqs, self._settings)
                self._sqs = sqs
        return self._sqs

    async def send(self, connection_id: str, event_ids: Sequence[str]) -> None:
        """Ask the worker to post ``event_ids``' kept frames, in this order, to the connection."""
        sqs = self._sqs or await self._open()
        body = replay_body(connection_id)
        await sqs.send_message(
            QueueUrl=self._url,
            MessageBody=body.to_json(),
            MessageAttributes=attributes.replay(event_ids),
            # a group per connection: a replay never waits behind another stream
            **queues.fifo_fields(self._url, connection_id, body.id),
        )

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._sqs = None
