"""The worker's batched SQS calls, against a real moto server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from fanout.worker.sqs import Batcher
from tests.conftest import Server, dev_settings, free_port
from tests.helpers import Proxy, wait_for


@pytest.fixture
async def queue(moto_server: Server) -> AsyncIterator[tuple[Any, str, Proxy]]:
    """A fresh queue, reached through a TCP proxy that can refuse connections."""
    proxy = Proxy(free_port(), int(moto_server.url.rsplit(":", 1)[1]))
    await proxy.start()
    settings = dev_settings(moto_server)
    config = AioConfig(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    kwargs = {**settings.aws_client_kwargs(), "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
    try:
        async with get_session().create_client("sqs", config=config, **kwargs) as sqs:
            url = (await sqs.create_queue(QueueName=settings.queue_name))["QueueUrl"]
            yield sqs, url, proxy
    finally:
        await proxy.stop()


async def _received(sqs: Any, url: str, count: int) -> list[str]:
    for i in range(count):
        await sqs.send_message(QueueUrl=url, MessageBody=str(i))
    receipts: list[str] = []
    while len(receipts) < count:
        reply = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        receipts += [m["ReceiptHandle"] for m in reply.get("Messages", [])]
    return receipts


async def _depth(sqs: Any, url: str) -> dict[str, str]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return dict((await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"])


async def _empty(sqs: Any, url: str) -> bool:
    return {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"} == await _depth(
        sqs, url
    )


async def test_deletes_that_fail_are_kept_until_sqs_is_back(queue: tuple[Any, str, Proxy]) -> None:
    """A delete call that fails keeps its receipts, and the next flush deletes them."""
    sqs, url, proxy = queue
    batcher = Batcher(sqs, url)
    for receipt in await _received(sqs, url, 13):
        batcher.delete(receipt)
    await proxy.stop()
    assert not await batcher.flush()  # refused: the receipts must stay pending
    await proxy.start()
    assert await batcher.flush()
    assert {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"} == await _depth(
        sqs, url
    )


async def test_visibility_changes_release_and_extend(queue: tuple[Any, str, Proxy]) -> None:
    """Visibility 0 makes messages receivable again at once; a longer one keeps them hidden."""
    sqs, url, _ = queue
    receipts = await _received(sqs, url, 12)
    batcher = Batcher(sqs, url)
    await batcher.set_visibility(receipts[:5], 0)
    await batcher.set_visibility(receipts[5:], 600)
    assert {"ApproximateNumberOfMessages": "5", "ApproximateNumberOfMessagesNotVisible": "7"} == await _depth(
        sqs, url
    )


async def test_the_background_task_deletes_in_batches(queue: tuple[Any, str, Proxy]) -> None:
    """Started, the batcher deletes what it is given within its linger, and close() flushes the rest."""
    sqs, url, _ = queue
    batcher = Batcher(sqs, url, linger_s=0.01)
    batcher.start()
    for receipt in await _received(sqs, url, 23):
        batcher.delete(receipt)
    await batcher.close()
    assert {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"} == await _depth(
        sqs, url
    )


async def test_the_background_task_deletes_within_its_linger_without_a_flush(
    queue: tuple[Any, str, Proxy],
) -> None:
    """A started batcher, given a few receipts and nothing more, deletes them on its own."""
    sqs, url, _ = queue
    batcher = Batcher(sqs, url, linger_s=0.01)
    batcher.start()
    try:
        for receipt in await _received(sqs, url, 3):
            batcher.delete(receipt)
        await wait_for(lambda: _empty(sqs, url), timeout=5)
    finally:
        await batcher.close()


async def test_the_background_task_tries_a_failed_delete_again_on_its_own(
    queue: tuple[Any, str, Proxy],
) -> None:
    """Deletes refused while SQS is unreachable go through once it is back, with no new receipt to wake
    the batcher."""
    sqs, url, proxy = queue
    receipts = await _received(sqs, url, 4)
    failures = 0

    class Counted:
        """The SQS client, counting the delete calls that fail."""

        async def delete_message_batch(self, **params: Any) -> Any:
            nonlocal failures
            try:
                return await sqs.delete_message_batch(**params)
            except Exception:
                failures += 1
                raise

    batcher = Batcher(Counted(), url, linger_s=0.01)
    batcher.start()
    try:
        await proxy.stop()
        for receipt in receipts:
            batcher.delete(receipt)
        await wait_for(lambda: failures > 0, timeout=10)
        await proxy.start()
        await wait_for(lambda: _empty(sqs, url), timeout=10)
    finally:
        await batcher.close()
