"""The hot path's MongoDB steps, watched on the worker's own client: events received together are kept in
the history before any of their users' records is read, and their lookups share one query."""

from __future__ import annotations

import asyncio
import functools
import secrets
from contextlib import AsyncExitStack

import aiohttp
import pytest
from pymongo import AsyncMongoClient, monitoring

from fanout import build_event
from fanout.store import connections
from fanout.worker.consumer import Worker
from tests.helpers import connect, sqs_client, wait_for
from tests.integration.conftest import Lane


class Steps(monitoring.CommandListener):
    """Every history insert that succeeded (the event ids it carried) and every user lookup started (the
    users it asked for), in the order the client saw them."""

    def __init__(self, history: str, records: str) -> None:
        self.history, self.records = history, records
        self.seen: list[tuple[str, list[str]]] = []
        self._inserting: dict[int, list[str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "insert" and command["insert"] == self.history:
            self._inserting[event.request_id] = [doc["_id"] for doc in command["documents"]]
        elif event.command_name == "find" and command["find"] == self.records:
            users = command.get("filter", {}).get("userId", {})
            if isinstance(users, dict) and "$in" in users:
                self.seen.append(("lookup", list(users["$in"])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if (kept := self._inserting.pop(event.request_id, None)) is not None:
            self.seen.append(("kept", kept))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._inserting.pop(event.request_id, None)


async def test_events_received_together_are_kept_before_their_users_are_read_in_one_query(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten notifications for ten users, sent in one batch: every event's history document is written
    before its user's records are read (a client that connects after the read finds the event when it
    resumes), and the events' lookups share queries (fewer lookups than events)."""
    s = lane.stack.settings
    steps = Steps(s.history_collection, s.connections_collection)
    monkeypatch.setattr(
        connections, "AsyncMongoClient", functools.partial(AsyncMongoClient, event_listeners=[steps])
    )
    worker = Worker(s, serve_health=False)
    running = asyncio.create_task(worker.main())
    run = secrets.token_hex(3)
    users = [f"merged-{run}-{i}" for i in range(10)]
    events = [
        build_event("notification.new", user_ids=[u], payload={"notificationId": f"n-{u}"}) for u in users
    ]
    event_of = {u: e.id for u, e in zip(users, events, strict=True)}
    try:
        async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
            clients = [await connect(es, http, lane.stack.ws_url, s, u) for u in users]
            await wait_for(lambda: worker.readiness.ready, timeout=30)
            sqs = sqs_client(s)
            url = sqs.get_queue_url(QueueName=s.queue_name)["QueueUrl"]
            entries = [{"Id": str(i), "MessageBody": e.to_json()} for i, e in enumerate(events)]
            assert not (await asyncio.to_thread(sqs.send_message_batch, QueueUrl=url, Entries=entries)).get(
                "Failed"
            )
            sqs.close()
            await wait_for(
                lambda: all(
                    e.id in {f.get("id") for f in c.events()} for c, e in zip(clients, events, strict=True)
                )
            )
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    kept: set[str] = set()
    lookups: list[list[str]] = []
    for step, names in steps.seen:
        if step == "kept":
            kept.update(names)
            continue
        ours = [u for u in names if u in event_of]
        assert all(event_of[u] in kept for u in ours), f"read {ours} before their events were kept"
        if ours:
            lookups.append(ours)
    assert sorted(u for asked in lookups for u in asked) == sorted(users)  # each user read once
    assert len(lookups) < len(users), lookups
