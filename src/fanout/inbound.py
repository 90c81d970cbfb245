"""Client actions forwarded to the domain services: the inbound message and the queue it goes on.

A frame whose action the domain owns (``chat.send``, ``chat.read``, ``FANOUT_FORWARD_ACTIONS``) becomes
one SQS message on the inbound queue (docs/protocol.md section 15). Identity in it comes from the verified
connection record; the client's frame travels as ``body``, untouched and untrusted. A domain service
parses it with ``InboundMessage.model_validate_json`` and answers the one connection by publishing with
``connection_ids=[message.connection_id]``.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any, Literal

from aiobotocore.session import get_session
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from fanout.config import Settings


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
    """Sends inbound messages with aiobotocore. The client is opened on the first forwarded frame and
    kept for the process (most lifecycle invocations never forward, so a cold start does not pay it)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._url = ""
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        async with self._opening:
            if self._client is None:
                s = self._settings
                client = await self._stack.enter_async_context(
                    get_session().create_client("sqs", **s.aws_client_kwargs())
                )
                self._url = s.inbound_queue_url or str(
                    (await client.get_queue_url(QueueName=s.inbound_queue_name))["QueueUrl"]
                )
                self._client = client
        return self._client

    async def send(self, message: InboundMessage) -> None:
        """Put one message on the queue; a FIFO queue keeps each connection's frames in order."""
        client = self._client or await self._open()
        extra: dict[str, str] = {}
        if self._url.endswith(".fifo"):
            extra = {"MessageGroupId": message.connection_id, "MessageDeduplicationId": message.request_id}
        await client.send_message(QueueUrl=self._url, MessageBody=message.to_json(), **extra)

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
