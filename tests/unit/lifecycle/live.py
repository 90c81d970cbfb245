"""Shared by the typing, receipt and presence tests: a lifecycle whose events queue exists on moto, users
connected through ``$connect``, conversations in the product's collection, and what reached the queue."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from fanout.lifecycle import Lifecycle
from fanout.tokens import sign
from tests.conftest import Server
from tests.unit.lifecycle import events

if TYPE_CHECKING:
    from tests.unit.lifecycle.conftest import MakeLifecycle


@dataclass
class Live:
    """A lifecycle, the SQS client and URL of its events queue."""

    lc: Lifecycle
    sqs: Any
    url: str

    async def connect(self, connection_id: str, user_id: str) -> None:
        token = sign(user_id, self.lc.services.settings.jwt_key())
        assert 200 == (await self.lc.handle(events.connect(connection_id, token=token)))["statusCode"]

    async def disconnect(self, connection_id: str) -> None:
        assert 200 == (await self.lc.handle(events.disconnect(connection_id)))["statusCode"]

    async def conversation(self, conversation_id: Any, *participants: Any, key: str = "_id") -> None:
        """A conversation document as the product might store it (``_id`` or ``conversationId``)."""
        db = self.lc.services.store.database
        await db[self.lc.services.settings.conversations_collection].insert_one(
            {key: conversation_id, "participants": list(participants)}
        )

    def drain(self, wait_s: float = 0, at_least: int = 1) -> list[dict[str, Any]]:
        """Every message now visible on the events queue (deleted), as ``{"body", "check"}``; waits up to
        ``wait_s`` for ``at_least`` of them."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait_s
        while True:
            reply = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
            )
            messages = reply.get("Messages", [])
            for m in messages:
                check = (m.get("MessageAttributes") or {}).get("fanout-check", {}).get("StringValue")
                out.append({"body": json.loads(m["Body"]), "check": check})
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
            if not messages and (len(out) >= at_least or time.monotonic() >= deadline):
                return out
            if not messages:
                time.sleep(0.1)


MakeLive = Callable[..., Awaitable[Live]]


@pytest.fixture
async def make_live(make_lifecycle: MakeLifecycle, moto_server: Server) -> AsyncIterator[MakeLive]:
    """Builds lifecycles on moto with their events queue created (settings of the test's choosing; presence
    off unless asked, so a connect publishes nothing by itself)."""
    made: list[Live] = []

    async def make(**fields: Any) -> Live:
        lc = await make_lifecycle(moto=moto_server, **({"presence": False} | fields))
        sqs = boto3.client("sqs", **lc.services.settings.aws_client_kwargs())
        url = sqs.create_queue(QueueName=lc.services.settings.queue_name)["QueueUrl"]
        made.append(Live(lc, sqs, url))
        return made[-1]

    yield make
    for live in made:
        live.sqs.close()


def resolve_participants(conversation_id: str) -> list[str]:
    """A product's participants resolver (plain function), for FANOUT_PARTICIPANTS_RESOLVER."""
    return {"team": ["u1", "u2", "u3"]}.get(conversation_id, [])


async def resolve_audience(user_id: str) -> list[str]:
    """A product's presence audience (coroutine), for FANOUT_PRESENCE_AUDIENCE: followers."""
    return {"u1": ["f1", "f2"], "f1": ["u1"]}.get(user_id, [])


def broken_participants(conversation_id: str) -> list[str]:
    """A resolver whose backing service is down."""
    raise ConnectionError("the chat service is unreachable")
