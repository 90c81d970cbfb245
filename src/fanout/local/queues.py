"""Local queue creation: the events and bulk queues with their dead-letter queue, the SNS topic feeding
them, and the inbound queue."""

from __future__ import annotations

import json
from typing import Any

import boto3

from fanout.config import Settings

MAX_RECEIVE_COUNT = 5  # SQS moves a message that keeps failing to the DLQ after this many receives


def _fifo(name: str) -> dict[Any, str]:
    """A name ending in ``.fifo`` is a FIFO queue or topic (AWS requires the suffix for them)."""
    return {"FifoQueue": "true"} if name.endswith(".fifo") else {}


def create_queues(settings: Settings) -> dict[str, str]:
    """Create the events queue, the bulk queue of broadcast shards, their DLQ (redrive policy), the
    topic subscribed to the events queue, and the inbound queue of forwarded client actions; idempotent.
    A queue named ``*.fifo`` is created FIFO (the events queue and its DLQ together), and the topic feeds
    it only when it is FIFO too."""
    s = settings
    kwargs: dict[str, Any] = s.aws_client_kwargs()
    sqs = boto3.client("sqs", **kwargs)
    sns = boto3.client("sns", **kwargs)
    try:
        dlq_url = sqs.create_queue(QueueName=s.dlq_name, Attributes=_fifo(s.dlq_name))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
        attributes: dict[Any, str] = {
            "RedrivePolicy": redrive,
            "VisibilityTimeout": str(s.visibility_timeout_s),
        }
        queue_url = sqs.create_queue(QueueName=s.queue_name, Attributes=attributes | _fifo(s.queue_name))[
            "QueueUrl"
        ]
        bulk_url = sqs.create_queue(
            QueueName=s.bulk_queue_name, Attributes=attributes | _fifo(s.bulk_queue_name)
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic_fifo = {"FifoTopic": "true"} if s.topic_name.endswith(".fifo") else {}
        topic_arn = sns.create_topic(Name=s.topic_name, Attributes=topic_fifo)["TopicArn"]
        if bool(topic_fifo) == bool(_fifo(s.queue_name)):  # SNS feeds a FIFO queue from a FIFO topic only
            sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        inbound_url = sqs.create_queue(
            QueueName=s.inbound_queue_name, Attributes=_fifo(s.inbound_queue_name)
        )["QueueUrl"]
    finally:
        sqs.close()
        sns.close()
    return {"queue": queue_url, "bulk": bulk_url, "dlq": dlq_url, "topic": topic_arn, "inbound": inbound_url}
