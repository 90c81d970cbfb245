"""Queue URLs: the configured URL wins, else the URL SQS gives for the configured name. One place for
the worker, the DLQ tools and the publisher."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from fanout.config import Settings


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
