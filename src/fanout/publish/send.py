"""One call to SQS for a batch of buffered events, and what became of each: what the background
publishers (threads and tasks) and the outbox relay share.

A batch goes with ``SendMessageBatch``, a lone body over 256 KiB with ``SendMessage``. A batch that SQS
refuses whole with a 400 about the request (``BatchRequestTooLong``, ``TooManyEntriesInBatchRequest``,
entry ids) or about one message's content (a body over the queue's ``MaximumMessageSize``) goes again one
entry at a time: the good entries are sent and only the bad one is refused, instead of the whole batch
coming back for ever. A message is refused for good only for its content (``batch.CONTENT_REFUSED``); any
other failure raises, or comes back as ``retry``, and the caller sends it again after a backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from fanout.publish.batch import (
    MAX_BATCH_BYTES,
    Entry,
    Result,
    batch_refused,
    error_code,
    outcome,
    refused,
    request_for,
    single,
)


def send_one(client: Any, url: str, entry: Entry) -> Result:
    """``SendMessage`` of one entry: sent, or refused for its content; raises on any other failure."""
    try:
        client.send_message(QueueUrl=url, MessageBody=entry.body, **single(url, entry))
    except ClientError as exc:
        if not refused(exc):
            raise
        return Result(refused=[(entry, error_code(exc))])
    return Result(sent=[entry])


def send_batch(client: Any, url: str, batch: list[Entry]) -> Result:
    """One batch with a boto3 client (one entry at a time when SQS refuses the batch as such). Raises
    when the call fails before any entry is known sent: the caller retries them all."""
    if len(batch) == 1 and batch[0].size > MAX_BATCH_BYTES:
        return send_one(client, url, batch[0])
    try:
        reply = client.send_message_batch(QueueUrl=url, Entries=request_for(url, batch))
    except ClientError as exc:
        if not batch_refused(exc):
            raise
        result = Result()
        for i, entry in enumerate(batch):
            try:
                result.add(send_one(client, url, entry))
            except Exception as failed:
                _rest(result, batch, i, failed)
                break
        return result
    return outcome(batch, reply)


async def asend_one(client: Any, url: str, entry: Entry) -> Result:
    """``send_one`` with an aiobotocore client."""
    try:
        await client.send_message(QueueUrl=url, MessageBody=entry.body, **single(url, entry))
    except ClientError as exc:
        if not refused(exc):
            raise
        return Result(refused=[(entry, error_code(exc))])
    return Result(sent=[entry])


async def asend_batch(client: Any, url: str, batch: list[Entry], within_s: float | None = None) -> Result:
    """``send_batch`` with an aiobotocore client. ``within_s``: no call outlasts that many seconds from
    now; one still under way then is cut off (``TimeoutError``), and none starts after. Sent one by one,
    the entries settled before the cut are kept in the result and the rest are retried; only a cut with
    nothing settled raises."""
    deadline = None if within_s is None else time.monotonic() + within_s

    def bounded() -> asyncio.Timeout:
        return asyncio.timeout(None if deadline is None else max(0.0, deadline - time.monotonic()))

    if len(batch) == 1 and batch[0].size > MAX_BATCH_BYTES:
        async with bounded():
            return await asend_one(client, url, batch[0])
    try:
        async with bounded():
            reply = await client.send_message_batch(QueueUrl=url, Entries=request_for(url, batch))
    except ClientError as exc:
        if not batch_refused(exc):
            raise
        result = Result()
        for i, entry in enumerate(batch):
            try:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("no time left to send the rest")
                async with bounded():
                    result.add(await asend_one(client, url, entry))
            except Exception as failed:  # a cut-off call's TimeoutError too
                _rest(result, batch, i, failed)
                break
        return result
    return outcome(batch, reply)


def _rest(result: Result, batch: Sequence[Entry], i: int, failed: Exception) -> None:
    """Entry ``i`` of a batch sent one by one failed for a reason other than its content: it and the
    ones after it are retried; with nothing settled yet, the call failed as a whole (re-raised)."""
    if i == 0:
        raise failed
    result.retry += batch[i:]
    result.why = error_code(failed) if isinstance(failed, ClientError) else type(failed).__name__
