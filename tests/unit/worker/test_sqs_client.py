"""The worker's own SQS client: bodies and signatures as botocore makes them, calls against real moto."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import pytest
from aiohttp import web
from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials

from fanout.gateway.http import ProtocolError
from fanout.gateway.sigv4 import Signer
from fanout.worker.sqs_client import SqsClient, SqsError, body
from tests.conftest import Server, dev_settings, free_port

HEADERS = (
    "Authorization",
    "X-Amz-Date",
    "X-Amz-Target",
    "Content-Type",
    "X-Amz-Security-Token",
    "x-amzn-query-mode",
)
WHEN = datetime(2026, 2, 17, 23, 59, 58, tzinfo=UTC)
URL = "https://sqs.us-east-1.amazonaws.com/123456789012/fanout-events"
CALLS = [
    (
        "ReceiveMessage",
        "receive_message",
        {"QueueUrl": URL, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 20, "VisibilityTimeout": 30,
         "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["SentTimestamp", "ApproximateReceiveCount"]},
    ),
    ("DeleteMessageBatch", "delete_message_batch",
     {"QueueUrl": URL, "Entries": [{"Id": "0", "ReceiptHandle": "AQEB+/=é"}, {"Id": "1", "ReceiptHandle": "x"}]}),
    ("ChangeMessageVisibilityBatch", "change_message_visibility_batch",
     {"QueueUrl": URL, "Entries": [{"Id": "0", "ReceiptHandle": "r", "VisibilityTimeout": 0}]}),
]  # fmt: skip


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _botocore(method: str, params: dict[str, Any], token: str | None) -> Any:
    """The request botocore would send, caught before it leaves."""
    client = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="SECRET",  # noqa: S106
        aws_session_token=token,
    )  # fmt: skip
    caught: list[Any] = []

    def catch(request: Any, **_: Any) -> AWSResponse:
        caught.append(request)
        return AWSResponse(request.url, 200, {}, None)

    client.meta.events.register("before-send", catch)
    frozen = mock.patch("botocore.auth.get_current_datetime", return_value=WHEN.replace(tzinfo=None))
    with (
        frozen,
        contextlib.suppress(Exception),
    ):  # the empty answer does not parse; the request is what we want
        getattr(client, method)(**params)
    client.close()
    return caught[0]


@pytest.mark.parametrize("token", ["SESSION", None])
@pytest.mark.parametrize(("action", "method", "params"), CALLS, ids=[c[0] for c in CALLS])
def test_body_and_signature_match_botocore(
    action: str, method: str, params: dict[str, Any], token: str | None
) -> None:
    """Each hot-path call serializes and signs exactly as botocore does, with and without a session token."""
    theirs = _botocore(method, params, token)
    data = body(params)
    assert theirs.body == data
    signer = Signer(Credentials("AKIDEXAMPLE", "SECRET", token), "us-east-1", service="sqs")
    ours = dict(
        signer.sign_json("sqs.us-east-1.amazonaws.com", f"AmazonSQS.{action}", data, WHEN, query_mode=True)
    )
    for header in HEADERS:
        assert _text(theirs.headers.get(header)) == ours.get(header), header


@pytest.fixture
async def sqs(moto_server: Server) -> AsyncIterator[tuple[SqsClient, Any, str]]:
    settings = dev_settings(moto_server)
    boto = boto3.client("sqs", **settings.aws_client_kwargs())
    url = boto.create_queue(QueueName=settings.queue_name)["QueueUrl"]
    signer = Signer(Credentials("fanout-local", "fanout-local"), "us-east-1", service="sqs")
    client = SqsClient(signer, moto_server.url, timeout_s=5, poll_timeout_s=10)
    yield client, boto, url
    await client.close()
    boto.close()


async def test_receive_delete_and_release_against_moto(sqs: tuple[SqsClient, Any, str]) -> None:
    """Messages sent with boto3 are received with their attributes, released, received again, deleted."""
    client, boto, url = sqs
    for i in range(3):
        boto.send_message(
            QueueUrl=url, MessageBody=json.dumps({"n": i}),
            MessageAttributes={"fanout-round": {"DataType": "Number", "StringValue": "1"}},
        )  # fmt: skip
    reply = await client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30,
        MessageAttributeNames=["All"], MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
    )  # fmt: skip
    messages = reply["Messages"]
    assert 3 == len(messages)
    assert {"1"} == {m["MessageAttributes"]["fanout-round"]["StringValue"] for m in messages}
    assert all("SentTimestamp" in m["Attributes"] for m in messages)
    released = await client.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[{"Id": "0", "ReceiptHandle": messages[0]["ReceiptHandle"], "VisibilityTimeout": 0}],
    )
    assert not released.get("Failed")
    again = await client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    handles = [m["ReceiptHandle"] for m in messages[1:]] + [m["ReceiptHandle"] for m in again["Messages"]]
    deleted = await client.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
    )
    assert 3 == len(deleted["Successful"])
    depth = boto.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert "0" == depth["Attributes"]["ApproximateNumberOfMessages"]


async def test_an_error_answer_is_an_sqs_error(sqs: tuple[SqsClient, Any, str]) -> None:
    """SQS's error answer (an unknown queue) raises SqsError with the AWS error code."""
    client, _, url = sqs
    with pytest.raises(SqsError) as caught:
        await client.receive_message(QueueUrl=url + "-missing", WaitTimeSeconds=0)
    assert 400 == caught.value.status
    assert "QueueDoesNotExist" in caught.value.code


@pytest.mark.parametrize(
    ("status", "expected"), [(500, SqsError), (200, ProtocolError)], ids=["error-page", "ok-not-json"]
)
async def test_an_answer_that_is_not_json_is_a_named_error(status: int, expected: type[Exception]) -> None:
    """A proxy's HTML page instead of SQS's JSON: an error status is an SqsError naming the status, a
    200 a ProtocolError; never a JSONDecodeError from deep inside the client."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(status=status, text="<html>busy</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    signer = Signer(Credentials("AKIDEXAMPLE", "SECRET"), "us-east-1", service="sqs")
    client = SqsClient(signer, f"http://127.0.0.1:{port}", timeout_s=5, poll_timeout_s=5)
    try:
        with pytest.raises(expected) as caught:
            await client.delete_message_batch(QueueUrl=URL, Entries=[{"Id": "0", "ReceiptHandle": "r"}])
    finally:
        await client.close()
        await runner.cleanup()
    if isinstance(caught.value, SqsError):
        assert ("HTTP500", 500) == (caught.value.code, caught.value.status)
