"""Local queue creation: the events queue with its dead-letter queue, and the SNS topic feeding it."""

from __future__ import annotations

import json
from typing import Any

import boto3

from fanout.config import Settings

MAX_RECEIVE_COUNT = 5  # SQS moves a message that keeps failing to the DLQ after this many receives


def create_queues(settings: Settings) -> dict[str, str]:
    """Create the events queue, the bulk queue of broadcast shards, their DLQ (redrive policy), the
    topic subscribed to the events queue, and the inbound queue of forwarded client actions; idempotent."""
    s = settings
    kwargs: dict[str, Any] = s.aws_client_kwargs()
    sqs = boto3.client("sqs", **kwargs)
    sns = boto3.client("sns", **kwargs)
    try:
        dlq_url = sqs.create_queue(QueueName=s.dlq_name)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
        attributes: dict[Any, str] = {
            "RedrivePolicy": redrive,
            "VisibilityTimeout": str(s.visibility_timeout_s),
        }
        queue_url = sqs.create_queue(QueueName=s.queue_name, Attributes=attributes)["QueueUrl"]
        bulk_url = sqs.create_queue(QueueName=s.bulk_queue_name, Attributes=attributes)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic_arn = sns.create_topic(Name=s.topic_name)["TopicArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        inbound_url = sqs.create_queue(QueueName=s.inbound_queue_name)["QueueUrl"]
    finally:
        sqs.close()
        sns.close()
    return {"queue": queue_url, "bulk": bulk_url, "dlq": dlq_url, "topic": topic_arn, "inbound": inbound_url}
