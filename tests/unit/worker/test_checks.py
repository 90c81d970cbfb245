"""The worker's side of checks, against a real MongoDB and moto's SQS: a scheduled stop or an offline
check holds only while its state does, and the census's lapsed users become presence checks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aiobotocore.session import get_session
from pymongo import AsyncMongoClient

from fanout.envelope import validate
from fanout.live import events
from fanout.worker.checks import Checks
from tests.conftest import Server, dev_settings


@pytest.fixture
async def checks(mongo_server: Server, moto_server: Server) -> AsyncIterator[tuple[Checks, Any, Any, str]]:
    """Checks on a fresh database and queue (with the worker's own async SQS client); the database, a
    client to read the queue and the queue's URL."""
    settings = dev_settings(moto=moto_server, mongo=mongo_server)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    db = client[settings.mongo_db]
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    url = sqs.create_queue(QueueName=settings.queue_name)["QueueUrl"]
    async with get_session().create_client("sqs", **settings.aws_client_kwargs()) as worker_sqs:
        yield Checks.build(db, settings, worker_sqs, url), db, sqs, url
    sqs.close()
    await client.drop_database(settings.mongo_db)
    await client.close()


def _record(user: str, expires_in_s: float) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"connectionId": f"c-{user}", "userId": user, "domainName": "d", "stage": "s",
            "connectedAt": now, "expiresAt": now + timedelta(seconds=expires_in_s)}  # fmt: skip


async def test_an_offline_check_holds_only_for_a_user_still_gone(
    checks: tuple[Checks, Any, Any, str],
) -> None:
    """For a user marked online: with a live record the check does not hold; once the record lapsed it
    holds, for that check only, and the user's document says offline with lastSeenAt."""
    check, db, _, _ = checks
    await db.fanoutpresence.insert_one({"_id": "u1", "status": "online", "epoch": 1})
    await db.websocketconnections.insert_one(_record("u1", 600))
    seen = datetime.now(UTC).replace(microsecond=0)
    body = events.offline("u1", seen, ["u2"])
    assert not await check.confirm(body, "presence")
    await db.websocketconnections.update_one({"userId": "u1"}, {"$set": {"expiresAt": seen}})
    assert [True, True] == [await check.confirm(body, "presence") for _ in range(2)]
    assert not await check.confirm(events.offline("u1", seen, ["u2"]), "presence")  # another check
    doc = await db.fanoutpresence.find_one({"_id": "u1"})
    assert ("offline", seen) == (doc["status"], doc["lastSeenAt"])


async def test_lapsed_users_still_marked_online_get_a_presence_check(
    checks: tuple[Checks, Any, Any, str],
) -> None:
    """Of the users the census names, those marked online get one presence check each on the events queue,
    addressed to the users sharing a conversation with them; those already offline get none."""
    check, db, sqs, url = checks
    await db.fanoutpresence.insert_many(
        [{"_id": "u1", "status": "online"}, {"_id": "u2", "status": "offline"}]
    )
    await db.conversations.insert_one({"_id": "c9", "participants": ["u1", "u2", "u3"]})
    seen = datetime.now(UTC) - timedelta(minutes=1)
    await check.lapsed({"u1": seen, "u2": seen})
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])[
        "Messages"
    ]
    [(body, attrs)] = [(json.loads(m["Body"]), m["MessageAttributes"]) for m in messages]
    assert ("presence", "u1", "offline") == (
        attrs["fanout-check"]["StringValue"], body["payload"]["userId"], body["payload"]["status"])  # fmt: skip
    assert ["u2", "u3"] == sorted(body["target"]["userIds"])


async def test_an_offline_check_with_a_last_seen_time_mongodb_cannot_store_still_holds(
    checks: tuple[Checks, Any, Any, str],
) -> None:
    """A presence check whose payload lastSeenAt is valid ISO-8601 but falls before year 1 in UTC
    (0001-01-01T00:00:00+00:01) holds like any other, its lastSeenAt taken as now, rather than raising on
    every receive until it is dead-lettered as handler_error."""
    check, db, _, _ = checks
    await db.fanoutpresence.insert_one({"_id": "u1", "status": "online", "epoch": 1})
    doc = events.offline("u1", datetime.now(UTC), ["u2"]).model_dump(by_alias=True)
    doc["payload"]["lastSeenAt"] = "0001-01-01T00:00:00+00:01"
    body = validate(doc)  # the catalog's timestamp pattern accepts it
    before = datetime.now(UTC)
    assert await check.confirm(body, "presence")
    stored = await db.fanoutpresence.find_one({"_id": "u1"})
    assert "offline" == stored["status"] and stored["lastSeenAt"] >= before.replace(microsecond=0)
