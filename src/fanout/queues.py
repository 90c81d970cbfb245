"""Queue URLs: the configured URL wins, else the URL SQS gives for the configured name. One place for
the worker, the DLQ tools and the publisher; and the lifecycle's queues, opened on first use."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from botocore.exceptions import ClientError

from fanout.config import Settings, aio_session


def _wanted(settings: Settings, dlq: bool) -> tuple[str | None, str]:
    return (settings.dlq_url, settings.dlq_name) if dlq else (settings.queue_url, settings.queue_name)


def url(sqs: Any, settings: Settings, *, dlq: bool = False) -> str:
    """The events queue's URL (or the DLQ's), with a boto3 client."""
    known, name = _wanted(settings, dlq)
    return known or str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


async def aurl(sqs: Any, settings: Settings, *, dlq: bool = False) -> str:
    """The events queue's URL (or the DLQ's), with an aiobotocore client."""
    known, name = _wanted(settings, dlq)
    return known or str((await sqs.get_queue_url(QueueName=name))["QueueUrl"])


async def abulk(sqs: Any, settings: Settings) -> str | None:
    """The bulk queue's URL (broadcast shards), or None where there is none: production without
    ``FANOUT_BULK_QUEUE_URL``, or a development stack that did not create it, puts shards on the events
    queue."""
    if settings.bulk_queue_url:
        return settings.bulk_queue_url
    if not settings.is_dev:
        return None
    try:
        return str((await sqs.get_queue_url(QueueName=settings.bulk_queue_name))["QueueUrl"])
    except ClientError as exc:
        if "NonExistentQueue" in str(
            exc.response.get("Error", {}).get("Code", "")
        ) or "QueueDoesNotExist" in str(exc):
            return None
        raise


def is_fifo(destination: str) -> bool:
    """A FIFO queue or topic: AWS requires their names (so their URLs and ARNs) to end in ``.fifo``."""
    return destination.endswith(".fifo")


def fifo_fields(destination: str, group: str, dedup: str) -> dict[str, str]:
    """What a send to a FIFO queue or topic must carry: the group it is ordered in (``MessageGroupId``)
    and its deduplication id; nothing for a standard one."""
    if not is_fifo(destination):
        return {}
    return {"MessageGroupId": group, "MessageDeduplicationId": dedup}


class LazyQueue:
    """One queue sent to with aiobotocore; the client is opened on the first send and kept for the
    process. The lifecycle builds its queues so: most invocations send nothing, and a cold start should
    not pay for a client it may not use."""

    def __init__(self, settings: Settings, url: str | None, name: str) -> None:
        self._settings = settings
        self._known, self._name = url, name
        self._stack = AsyncExitStack()
        self._client: Any = None
        self.url = ""
        self._opening = asyncio.Lock()

    async def client(self) -> Any:
        """The SQS client, opened (and the queue's URL resolved) on first use."""
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                client = await self._stack.enter_async_context(
                    aio_session(self._settings).create_client("sqs", **self._settings.aws_client_kwargs())
                )
                self.url = self._known or str((await client.get_queue_url(QueueName=self._name))["QueueUrl"])
                self._client = client
        return self._client

    async def fifo(self) -> bool:
        """Whether the queue is FIFO (it then takes a group and a deduplication id, and no delay)."""
        await self.client()
        return is_fifo(self.url)

    async def send(self, body: str, *, group: str, dedup: str, **extra: Any) -> None:
        """One ``SendMessage``; ``group`` and ``dedup`` are its FIFO group and deduplication id (unused
        on a standard queue), ``extra`` carries ``MessageAttributes`` and the like."""
        client = await self.client()
        await client.send_message(
            QueueUrl=self.url, MessageBody=body, **fifo_fields(self.url, group, dedup), **extra
        )

    async def send_batch(self, entries: list[dict[str, Any]]) -> None:
        """Up to ten messages in one ``SendMessageBatch`` (``Id`` set here); raises when any failed."""
        client = await self.client()
        numbered = [{"Id": str(i), **entry} for i, entry in enumerate(entries)]
        reply = await client.send_message_batch(QueueUrl=self.url, Entries=numbered)
        if reply.get("Failed"):
            raise RuntimeError(f"{len(reply['Failed'])} of {len(entries)} messages were not queued")

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
