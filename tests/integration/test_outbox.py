"""The transactional outbox against real servers (SecantusDB, moto): an event leaves only with its
transaction, exactly one relay sends, and a relay killed mid-batch resends at most that batch."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, MongoClient
from pymongo.client_session import ClientSession
from structlog.testing import capture_logs

from fanout.config import Settings
from fanout.errors import InvalidMessage
from fanout.lifeline import die_with_parent
from fanout.local.queues import create_queues
from fanout.outbox import AsyncOutbox, Outbox
from fanout.outbox.relay import Relay
from fanout.publish import build_event
from fanout.worker.consumer import Worker
from tests.catalog_examples import payload
from tests.conftest import Server, _serve, _stop, _tcp_answers, dev_settings, free_port
from tests.helpers import QueueReceiver, SlowFront, SqsFront, sqs_client, wait_for


def outbox_settings(moto: Server, mongo: Server, **fields: Any) -> Settings:
    settings = dev_settings(moto, mongo, **({"relay_lease_s": 3, "relay_poll_s": 0.2} | fields))
    create_queues(settings)
    return settings


def add_events(settings: Settings, count: int, per_transaction: int = 100) -> list[str]:
    """Write ``count`` events, each with a domain document, in transactions of ``per_transaction``."""
    ids: list[str] = []
    with MongoClient(settings.mongo(), tz_aware=True) as client:
        db = client[settings.mongo_db]
        outbox = Outbox(db)
        for start in range(0, count, per_transaction):

            def write(session: ClientSession, start: int = start) -> list[str]:
                written = []
                for i in range(start, min(count, start + per_transaction)):
                    db.orders.insert_one({"n": i}, session=session)
                    event = build_event(
                        "notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"}
                    )
                    written.append(outbox.add(session, event))
                return written

            with client.start_session() as session:  # with_transaction retries transient conflicts
                ids += session.with_transaction(write)
    return ids


def value(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == name)


@asynccontextmanager
async def running(
    settings: Settings, owner: str
) -> AsyncIterator[tuple[Relay, CollectorRegistry, asyncio.Event]]:
    """A relay in this process with clients of its own; stopped (lease released) on exit."""
    registry = CollectorRegistry()
    stop = asyncio.Event()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    async with get_session().create_client("sqs", **settings.aws_client_kwargs()) as sqs:
        relay = Relay(settings, mongo, sqs, registry, owner=owner)
        task = asyncio.create_task(relay.run(stop))
        try:
            await wait_for(lambda: relay.healthy)  # its indexes exist: writes will not race their creation
            yield relay, registry, stop
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await mongo.close()


async def test_a_write_and_its_event_in_one_transaction_are_delivered_once(
    moto_server: Server, mongo_server: Server
) -> None:
    """The domain document and its event commit together; the relay sends the event once and marks it."""
    settings = outbox_settings(moto_server, mongo_server)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    db = mongo[settings.mongo_db]
    with QueueReceiver(settings) as receiver:
        async with running(settings, "a") as (relay, registry, _):
            async with mongo.start_session() as session, await session.start_transaction():
                await db.rsvps.insert_one({"event": 42, "user": "u1"}, session=session)
                event = build_event(
                    "event.rsvp.updated", user_ids=["u1"], payload=payload("event.rsvp.updated")
                )
                await AsyncOutbox(db).add(session, event)
            await receiver.until(1, settle_s=0)
            await wait_for(lambda: value(registry, "fanout_outbox_pending") == 0)
        arrived = await receiver.until_sent(1)  # the relay has stopped: all it sent is counted
        assert {event.id: 1} == arrived
        assert [json.loads(event.to_json())] == receiver.bodies
        entry = await db.fanout_outbox.find_one({"eventId": event.id})
        assert entry is not None and entry["relayedAt"] is not None
        assert 1 == await db.rsvps.count_documents({})
        assert relay.following
    await mongo.close()


async def test_a_relay_started_with_another_retention_changes_the_ttl_and_relays(
    moto_server: Server, mongo_server: Server
) -> None:
    """FANOUT_OUTBOX_RETENTION_S changed after a relay ran: the next relay applies the new retention to
    the TTL index and relays (before, creating the index again with other options failed, and the relay
    retried that for ever with every entry left pending)."""
    settings = outbox_settings(moto_server, mongo_server)
    async with running(settings, "a"):
        pass
    shorter = settings.model_copy(update={"outbox_retention_s": 3600})
    ids = add_events(shorter, 3)
    with QueueReceiver(shorter) as receiver:
        async with running(shorter, "b"):
            await receiver.until(3, settle_s=0)
        arrived = await receiver.until_sent(3)
    assert dict.fromkeys(ids, 1) == arrived
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    ttl = [
        i
        for i in await (await mongo[settings.mongo_db].fanout_outbox.list_indexes()).to_list()
        if i["name"] == "relayed_ttl"
    ]
    await mongo.close()
    assert [3600] == [i["expireAfterSeconds"] for i in ttl]


async def test_an_aborted_transaction_delivers_nothing(moto_server: Server, mongo_server: Server) -> None:
    """An event added in a transaction that aborts never reaches the queue; the next committed one does."""
    settings = outbox_settings(moto_server, mongo_server)
    with MongoClient(settings.mongo(), tz_aware=True) as client, QueueReceiver(settings) as receiver:
        db = client[settings.mongo_db]
        async with running(settings, "a"):
            aborted = build_event(
                "chat.message", user_ids=["u1"], payload=payload("chat.message", text="never")
            )

            def change_that_fails() -> None:
                with client.start_session() as session, session.start_transaction():
                    db.messages.insert_one({"text": "never"}, session=session)
                    Outbox(db).add(session, aborted)
                    raise RuntimeError("the domain change failed")

            with pytest.raises(RuntimeError):
                change_that_fails()
            [committed] = await asyncio.to_thread(add_events, settings, 1)
            await receiver.until(1, settle_s=0)
        arrived = await receiver.until_sent(1)  # the relay has stopped: all it sent is counted
        assert {committed: 1} == arrived
        assert 0 == db.fanout_outbox.count_documents({"eventId": aborted.id})
        assert 0 == db.messages.count_documents({})


async def test_an_entry_sqs_refuses_is_marked_and_the_entries_after_it_still_leave(
    moto_server: Server, mongo_server: Server
) -> None:
    """An entry SQS refuses for good when sent alone (over 256 KiB, to a queue whose MaximumMessageSize is
    256 KiB: the outbox takes up to 1 MiB) is marked relayed with SQS's code and counted, and the entry
    after it is sent, instead of the relay retrying the refused one forever and sending nothing more."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=30)
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(256 * 1024)})
    sqs.close()
    users = [f"user-{i:07d}" for i in range(25_000)]  # a body of about 375 KB, its frame small
    big = build_event("notification.new", user_ids=users, payload=payload("notification.new"))
    small = build_event("notification.new", user_ids=["u1"], payload=payload("notification.new"))

    def write() -> None:
        with MongoClient(settings.mongo(), tz_aware=True) as client, client.start_session() as session:
            outbox = Outbox(client[settings.mongo_db])
            session.with_transaction(lambda s: [outbox.add(s, big), outbox.add(s, small)])

    await asyncio.to_thread(write)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    arrived, refused = await _relay_until_one(settings)
    entry = await mongo[settings.mongo_db].fanout_outbox.find_one({"eventId": big.id})
    await mongo.close()
    assert {small.id: 1} == arrived
    assert 1 == refused
    assert entry is not None and entry["relayedAt"] is not None and "InvalidParameterValue" == entry["error"]


async def _relay_until_one(settings: Settings) -> tuple[collections.Counter[str], float]:
    """Run one relay until one event arrives on the queue: what arrived and the refusals it counted, read
    once it has stopped (the refused entries come before that event: it refuses them before sending on)."""
    with QueueReceiver(settings) as receiver:
        async with running(settings, "a") as (_, registry, _stop):
            await receiver.until(1, timeout=15, settle_s=0)
        return await receiver.until_sent(1), value(registry, "fanout_outbox_refused_total")


async def test_an_entry_another_writer_malformed_is_marked_and_the_entries_after_it_still_leave(
    moto_server: Server, mongo_server: Server
) -> None:
    """Entries written around the outbox's own helper (no body, a body that is not text, a size that is
    not a byte count) are marked relayed as malformed_entry and counted, and the good entry after them
    leaves, instead of every batch they fall in failing and holding back everything after it."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=30)
    good = build_event("notification.new", user_ids=["u1"], payload=payload("notification.new"))
    now = datetime.now(UTC)
    bad = [
        {"eventId": "evt_no_body", "type": "notification.new", "createdAt": now},
        {"eventId": "evt_not_text", "type": "notification.new", "body": {"v": 1}, "createdAt": now},
        {"eventId": "evt_bad_size", "type": "notification.new", "body": good.to_json(), "size": "9",
         "createdAt": now},
    ]  # fmt: skip

    def write() -> None:
        with MongoClient(settings.mongo(), tz_aware=True) as client:
            client[settings.mongo_db].fanout_outbox.insert_many(bad)
            with client.start_session() as session:
                session.with_transaction(lambda s: Outbox(client[settings.mongo_db]).add(s, good))

    await asyncio.to_thread(write)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    arrived, refused = await _relay_until_one(settings)
    marks = await mongo[settings.mongo_db].fanout_outbox.find({"eventId": {"$ne": good.id}}).to_list()
    await mongo.close()
    assert {good.id: 1} == arrived
    assert 3 == refused
    assert {"malformed_entry"} == {m.get("error") for m in marks} and all(m.get("relayedAt") for m in marks)


async def test_an_entry_whose_body_nests_past_the_parser_does_not_hold_back_the_rest(
    moto_server: Server, mongo_server: Server
) -> None:
    """A body another writer nested deeper than Python's JSON parser goes (200,000 brackets) is sent like
    any other text (the worker refuses it with a reason), and the entry after it leaves. Before, reading
    its ordering key raised RecursionError on every round: relay_failed for ever, nothing after it sent."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=30)
    good = build_event("notification.new", user_ids=["u1"], payload=payload("notification.new"))
    nested = {"eventId": "evt_nested", "type": "notification.new", "body": "[" * 200_000,
              "createdAt": datetime.now(UTC)}  # fmt: skip

    def write() -> None:
        with MongoClient(settings.mongo(), tz_aware=True) as client:
            client[settings.mongo_db].fanout_outbox.insert_one(nested)
            with client.start_session() as session:
                session.with_transaction(lambda s: Outbox(client[settings.mongo_db]).add(s, good))

    await asyncio.to_thread(write)
    async with running(settings, "a") as (_, registry, _stop):
        await wait_for(lambda: value(registry, "fanout_outbox_relayed_total") == 2, timeout=10)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    left = await mongo[settings.mongo_db].fanout_outbox.count_documents({"relayedAt": None})
    await mongo.close()
    assert 0 == left


async def test_a_batch_sqs_refuses_whole_goes_one_by_one_and_the_rest_leave(
    moto_server: Server, mongo_server: Server
) -> None:
    """A SendMessageBatch SQS refuses whole with a 400 (here for one body over the queue's MaximumMessageSize
    of 1 KiB, as it would for BatchRequestTooLong or TooManyEntriesInBatchRequest) goes again one entry at a
    time: the entries around the bad one leave, and only it is marked refused, instead of the
    relay sending that batch for ever and nothing after it."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=30)
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})
    sqs.close()
    note = payload("notification.new")
    first, later = (build_event("notification.new", user_ids=["u1"], payload=note) for _ in range(2))
    big = build_event("notification.new", user_ids=[f"user-{i:05d}" for i in range(100)], payload=note)

    def write() -> None:
        with MongoClient(settings.mongo(), tz_aware=True) as client, client.start_session() as session:
            outbox = Outbox(client[settings.mongo_db])
            session.with_transaction(lambda s: [outbox.add(s, e) for e in (first, big, later)])

    await asyncio.to_thread(write)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    with QueueReceiver(settings) as receiver:
        async with running(settings, "a") as (_, registry, _stop):
            await receiver.until(2, timeout=15, settle_s=0)
            await wait_for(lambda: value(registry, "fanout_outbox_refused_total") == 1)
        arrived = await receiver.until_sent(2)  # the relay has stopped: all it sent is counted
    entry = await mongo[settings.mongo_db].fanout_outbox.find_one({"eventId": big.id})
    await mongo.close()
    assert {first.id: 1, later.id: 1} == arrived
    assert entry is not None and entry["relayedAt"] is not None and "InvalidParameterValue" == entry["error"]


async def test_a_large_entry_the_queue_cannot_take_yet_is_kept_and_sent_once_it_can(
    moto_server: Server, mongo_server: Server
) -> None:
    """A large entry (sent alone) refused because the queue is missing (a 400 that is the queue's, as a KMS
    grant's would be) stays unrelayed and uncounted, and leaves once the queue is back: only a message SQS
    will never take is marked refused."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=30)
    big = build_event(
        "notification.new",
        user_ids=[f"user-{i:07d}" for i in range(20_000)],
        payload=payload("notification.new"),
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    entries = mongo[settings.mongo_db].fanout_outbox
    with QueueReceiver(settings) as receiver:
        async with running(settings, "a") as (_, registry, _stop):
            sqs = sqs_client(settings)
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"])
            with MongoClient(settings.mongo(), tz_aware=True) as client, client.start_session() as session:
                session.with_transaction(lambda s: Outbox(client[settings.mongo_db]).add(s, big))
            await asyncio.sleep(1)  # the relay tries, and is refused
            held = await entries.find_one({"eventId": big.id})
            refused = value(registry, "fanout_outbox_refused_total")
            create_queues(settings)
            sqs.close()
            await receiver.until(1, timeout=20, settle_s=0)
        arrived = await receiver.until_sent(1)  # the relay has stopped: all it sent is counted
    await mongo.close()
    assert held is not None and held.get("relayedAt") is None
    assert 0 == refused
    assert {big.id: 1} == arrived


def test_add_refuses_a_session_without_a_transaction_and_a_body_over_1_mib(mongo_server: Server) -> None:
    """Outside a transaction the event could outlive an aborted change: refused; so is a body SQS refuses."""
    settings = dev_settings(mongo=mongo_server)
    with MongoClient(settings.mongo()) as client, client.start_session() as session:
        outbox = Outbox(client[settings.mongo_db])
        with pytest.raises(ValueError, match="open transaction"):
            outbox.add(
                session, build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n1"})
            )
        huge = build_event(
            "notification.new",
            user_ids=[f"user-{i:07d}" for i in range(90_000)],
            payload={"notificationId": "n1"},
        )
        with pytest.raises(InvalidMessage, match="too_large"), session.start_transaction():
            outbox.add(session, huge)
        assert 0 == outbox.collection.count_documents({})


async def test_two_relays_only_one_sends_and_the_other_takes_over(
    moto_server: Server, mongo_server: Server
) -> None:
    """With two relays running, the leaseholder sends every event; once it stops, the other sends."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=30)  # a stalled machine keeps it
    with QueueReceiver(settings) as receiver:
        async with running(settings, "first") as (a, reg_a, stop_a):
            await wait_for(lambda: a.lease.held)
            async with running(settings, "second") as (b, reg_b, _):
                # the relays run meanwhile: each insert wakes both, and the other asks for the lease
                ids = await asyncio.to_thread(add_events, settings, 150, 50)
                await receiver.until(150, settle_s=0)
                # counted once marked, just after the send: a relay that sent none would stay under 150
                await wait_for(lambda: value(reg_a, "fanout_outbox_relayed_total") >= 150)
                assert (True, False) == (a.lease.held, b.lease.held)
                assert 150 == value(reg_a, "fanout_outbox_relayed_total")
                assert 0 == value(reg_b, "fanout_outbox_relayed_total")
                assert (1, 0) == (
                    value(reg_a, "fanout_outbox_relay_leader"),
                    value(reg_b, "fanout_outbox_relay_leader"),
                )
                stop_a.set()  # the leaseholder stops and gives the lease up; the other takes it
                await wait_for(lambda: b.lease.held, timeout=10)
                more = await asyncio.to_thread(add_events, settings, 30)
                await receiver.until(180, settle_s=0)
                await wait_for(lambda: value(reg_b, "fanout_outbox_relayed_total") >= 30)
                assert 30 == value(reg_b, "fanout_outbox_relayed_total")
                assert 150 == value(reg_a, "fanout_outbox_relayed_total")
        arrived = await receiver.until_sent(180)  # both relays have stopped: all they sent is counted
    assert {i: 1 for i in ids + more} == dict(arrived)


async def test_a_call_to_sqs_is_cut_off_when_the_lease_may_lapse(
    moto_server: Server, mongo_server: Server
) -> None:
    """SQS holding a batch past the lease's validity: the relay gives the call up (TimeoutError, entries
    kept pending) and sends the batch again, rather than waiting on it (botocore's retries take up to a
    minute) while another relay may have taken the lease and be sending after it."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=1.5)
    with SlowFront(str(settings.aws_endpoint_url), 4.0) as front, capture_logs() as logs:
        slow = settings.model_copy(update={"aws_endpoint_url": front.url})
        async with running(slow, "slow") as (_, reg, _):
            await asyncio.to_thread(add_events, settings, 1)
            await wait_for(lambda: value(reg, "fanout_outbox_relayed_total") >= 1, timeout=3.5)
            failed = [e.get("error") for e in logs if e["event"] == "relay_failed"]
            assert "TimeoutError" in failed
            assert front.batches >= 2


class _SlowSends(SqsFront):
    """Answers each ``SendMessage`` (a batch sent one by one) ``delay_s`` late."""

    def __init__(self, upstream: str, delay_s: float) -> None:
        super().__init__(upstream)
        self.delay_s = delay_s

    def call(self, action: str) -> None:
        if action == "SendMessage":
            time.sleep(self.delay_s)


async def test_a_batch_sent_one_by_one_past_the_lease_keeps_what_went_and_the_rest_leave_later(
    moto_server: Server, mongo_server: Server
) -> None:
    """A batch SQS refuses whole goes one by one; when those calls outlast the lease's validity, the last
    is cut off, and the entries sent (and refused) before it are marked, so the next round sends the rest
    (before, the whole fallback was cut off and nothing marked: every round sent the same first entries
    again, and the entries after them never left)."""
    settings = outbox_settings(moto_server, mongo_server, relay_lease_s=3)  # 1 to 2 s to send in
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})
    sqs.close()
    note = payload("notification.new")
    good = [build_event("notification.new", user_ids=["u1"], payload=note) for _ in range(5)]
    big = build_event("notification.new", user_ids=[f"user-{i:05d}" for i in range(100)], payload=note)

    def write() -> None:
        with MongoClient(settings.mongo(), tz_aware=True) as client, client.start_session() as session:
            outbox = Outbox(client[settings.mongo_db])
            session.with_transaction(lambda s: [outbox.add(s, e) for e in (*good[:2], big, *good[2:])])

    with _SlowSends(str(settings.aws_endpoint_url), 0.4) as front, QueueReceiver(settings) as receiver:
        slow = settings.model_copy(update={"aws_endpoint_url": front.url})
        async with running(slow, "slow") as (_, registry, _stop):
            await asyncio.to_thread(write)  # one batch, refused whole: six calls of 0.4 s, over 2 s
            marked = ("fanout_outbox_relayed_total", "fanout_outbox_refused_total")
            await wait_for(lambda: [5, 1] == [value(registry, name) for name in marked], timeout=20)
        arrived = await receiver.until_sent(5)
    assert {e.id for e in good} == set(arrived)


async def test_without_change_streams_the_relay_polls(moto_server: Server, tmp_path: Path) -> None:
    """A server that refuses change streams (a standalone one) is polled; events still arrive."""
    port = free_port()
    argv = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", ":memory:", "--log-level", "WARNING", "--standalone"]  # fmt: skip
    process = _serve(argv, lambda: _tcp_answers(port), tmp_path / "standalone.log")
    try:
        settings = outbox_settings(moto_server, Server(f"mongodb://127.0.0.1:{port}", process))
        with QueueReceiver(settings) as receiver:
            async with running(settings, "a") as (relay, _, _):
                ids = await asyncio.to_thread(add_events, settings, 20, 5)
                await receiver.until(20, settle_s=0)
                assert not relay.following
            arrived = await receiver.until_sent(20)  # the relay has stopped: all it sent is counted
        assert {i: 1 for i in ids} == dict(arrived)
    finally:
        _stop(process, wake=lambda: _tcp_answers(port))


async def test_lag_and_pending_are_reported_while_no_relay_sends(
    moto_server: Server, mongo_server: Server
) -> None:
    """While another owner holds the lease, a relay sends nothing and reports the backlog's size and age."""
    settings = outbox_settings(moto_server, mongo_server)
    with MongoClient(settings.mongo(), tz_aware=True) as client:
        leases = client[settings.mongo_db][f"{settings.outbox_collection}_lease"]
        later = datetime.now(UTC) + timedelta(seconds=300)  # the longest lease a relay takes
        leases.insert_one({"_id": settings.outbox_collection, "owner": "elsewhere", "expiresAt": later})
    add_events(settings, 25)
    time.sleep(1.1)
    async with running(settings, "a") as (relay, registry, _):
        await wait_for(lambda: value(registry, "fanout_outbox_pending") == 25)
        assert value(registry, "fanout_outbox_lag_seconds") >= 1.0
        assert not relay.lease.held
        assert 0 == value(registry, "fanout_outbox_relayed_total")


@pytest.fixture
def relay_env(moto_server: Server, mongo_server: Server) -> tuple[Settings, dict[str, str]]:
    settings = outbox_settings(moto_server, mongo_server)
    env = {
        **os.environ,
        "FANOUT_ENV": "dev",
        "FANOUT_AWS_ENDPOINT_URL": moto_server.url,
        "FANOUT_QUEUE_NAME": settings.queue_name,
        "FANOUT_MONGO_URI": mongo_server.url,
        "FANOUT_MONGO_DB": settings.mongo_db,
        "FANOUT_RELAY_LEASE_S": "2",
        "FANOUT_LOG_FORMAT": "json",
    }
    return settings, env


def start_relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fanout", "relay"],
            env={**env, "FANOUT_METRICS_PORT": str(free_port())},
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip


def test_a_relay_killed_mid_batch_resends_at_most_that_batch(
    relay_env: tuple[Settings, dict[str, str]], moto_server: Server, tmp_path: Path
) -> None:
    """`fanout relay` is killed with SIGKILL while a batch is at SQS but not yet marked: the next relay
    takes over when the lease expires, every event arrives, and exactly that batch arrives twice."""
    settings, env = relay_env
    ids = add_events(settings, 300)  # the kill comes past 100: 200 are left for the next relay
    log = tmp_path / "relay.log"
    with QueueReceiver(settings) as receiver, MongoClient(settings.mongo(), tz_aware=True) as client:
        first = start_relay(env, log)
        deadline = time.monotonic() + 60
        while receiver.total() < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(moto_server.process.pid, signal.SIGSTOP)  # SQS hangs: the relay's next send waits in it
        try:
            time.sleep(0.5)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            os.kill(moto_server.process.pid, signal.SIGCONT)  # the killed relay's last batch lands now
        marked = client[settings.mongo_db].fanout_outbox.count_documents({"relayedAt": {"$ne": None}})
        # Past the marked events, the batch lands whole (one SendMessageBatch): the first of it, then the
        # queue drained (the killed relay sends nothing more). Counting too few fails the resend check
        # below, never passes it.
        sent = receiver.wait_sent(marked + 1, timeout=5).total()
        second = start_relay(env, log)
        try:
            receiver.wait(300 + sent - marked, timeout=90, settle_s=0)
        finally:
            second.terminate()
            second.wait(20)
        arrived = receiver.wait_sent(300 + sent - marked)  # the second relay has stopped too
        left = client[settings.mongo_db].fanout_outbox.count_documents({"relayedAt": None})
    assert 100 <= marked < 300, "the relay was not killed mid-run"
    assert 0 < sent - marked <= 10, f"{sent - marked} events sent but not marked: not one batch"
    assert set(ids) == set(arrived)
    assert sent - marked == sum(n - 1 for n in arrived.values())  # that batch again, nothing else
    assert (0, 0) == (second.returncode, left)
    assert 2 == log.read_text().count("relay_lease_acquired")


async def test_the_worker_runs_the_relay_with_fanout_relay(moto_server: Server, mongo_server: Server) -> None:
    """With FANOUT_RELAY=true a worker relays the outbox beside its consumer, and consumes what it relayed."""
    settings = outbox_settings(moto_server, mongo_server, relay=True, receive_wait_s=1)
    worker = Worker(settings, serve_health=False)
    running_worker = asyncio.create_task(worker.main())
    try:
        ids = await asyncio.to_thread(add_events, settings, 20)
        await wait_for(lambda: value(worker.registry, "fanout_events_total") >= 20, timeout=30)
        # the relay counts a batch once its marks are written, which can be after the consumer took it
        await wait_for(lambda: value(worker.registry, "fanout_outbox_relayed_total") >= 20)
        assert 20 == value(worker.registry, "fanout_outbox_relayed_total")
        assert 1 == value(worker.registry, "fanout_outbox_relay_leader")
    finally:
        worker.stop()
        await asyncio.wait_for(running_worker, 30)
    assert 20 == len(set(ids)) == worker.tally.received
