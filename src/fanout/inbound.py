"""Client actions forwarded to the domain services: the inbound message and the queue it goes on.

A frame whose action the domain owns (``chat.send``, ``chat.read``, ``FANOUT_FORWARD_ACTIONS``) becomes
one SQS message on the inbound queue (docs/protocol.md section 15). Identity in it comes from the verified
connection record; the client's frame travels as ``body``, untouched and untrusted. A domain service
parses it with ``InboundMessage.model_validate_json`` and answers the one connection by publishing with
``connection_ids=[message.connection_id]``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from fanout.config import Settings
from fanout.queues import LazyQueue


class InboundMessage(BaseModel):
    """One forwarded client action, version 1."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    v: Literal[1] = 1
    request_id: str  # also in the client's acknowledgement
    action: str
    user_id: str  # from the verified connection record, never from the frame
    connection_id: str  # answer it with target.connectionIds
    body: dict[str, Any]  # the client's frame as sent; whatever it claims about identity is not checked
    received_at: str
    reply_to: str | None = None  # the frame's own id, when it carried one

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class InboundQueue:
    """Sends inbound messages. The client is opened on the first forwarded frame and kept for the process
    (most lifecycle invocations never forward, so a cold start does not pay it)."""

    def __init__(self, settings: Settings) -> None:
        self._queue = LazyQueue(settings, settings.inbound_queue_url, settings.inbound_queue_name)

    async def send(self, message: InboundMessage) -> None:
        """Put one message on the queue; a FIFO queue keeps each connection's frames in order."""
        await self._queue.client()
        extra: dict[str, str] = {}
        if self._queue.url.endswith(".fifo"):
            extra = {"MessageGroupId": message.connection_id, "MessageDeduplicationId": message.request_id}
        await self._queue.send(message.to_json(), **extra)

    async def aclose(self) -> None:
        await self._queue.aclose()
