"""Run-time switches: the most specific key decides, the state lives in MongoDB, a worker keeps its last
reading when MongoDB does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from fanout.flags import FlagStore, LiveSwitches, Switches, check_key
from tests.conftest import Server, dev_settings


@pytest.mark.parametrize(
    ("states", "event_type", "enabled"),
    [
        ({}, "chat.message", True),
        ({"chat": False}, "chat.message", False),
        ({"chat": False}, "notification.new", True),
        ({"chat": False, "chat.message": True}, "chat.message", True),
        ({"chat": False, "chat.message": True}, "chat.read", False),
        ({"chat.typing": False}, "chat.typing.started", False),
        ({"chat.typing": False}, "chat.message", True),
        ({"chat": True}, "chat.message", True),
        ({"chat.message": False}, "chat.message.edited", False),
        ({"chat.message": False}, "chat.messages", True),
    ],
)
def test_the_most_specific_switch_decides(states: dict[str, bool], event_type: str, enabled: bool) -> None:
    """A type is on unless its longest switched prefix (type, prefix or domain) says off."""
    switches = Switches(states)
    assert enabled == switches.enabled(event_type)
    assert enabled == switches.enabled(event_type)  # the cached answer is the same


@pytest.mark.parametrize("key", ["Chat", "billing", "chat.", "chat..typing", "", "chat typing", "x" * 200])
def test_keys_are_domains_or_types_in_a_known_domain(key: str) -> None:
    """A key outside the known domains or not shaped like a type is refused."""
    with pytest.raises(ValueError, match="is not"):
        check_key(key)


@pytest.fixture
async def store(mongo_server: Server) -> AsyncIterator[tuple[FlagStore, Any]]:
    settings = dev_settings(mongo=mongo_server)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    collection = client[settings.mongo_db][settings.flags_collection]
    yield FlagStore(collection), collection
    await client.close()


async def test_switches_are_stored_listed_and_cleared(store: tuple[FlagStore, Any]) -> None:
    """set writes one document per key with its time, flags() lists them, clear forgets one."""
    flags, collection = store
    await flags.set("chat", False)
    await flags.set("chat.message", True)
    await flags.set("chat", False)  # again: still one document
    listed = await flags.flags()
    assert [("chat", False), ("chat.message", True)] == [(f.key, f.enabled) for f in listed]
    assert all(isinstance(f.updated_at, datetime) for f in listed)
    assert {"chat": False, "chat.message": True} == (await flags.read()).states
    assert await flags.clear("chat.message")
    assert not await flags.clear("chat.message")
    assert ["chat"] == (await flags.read()).off()
    assert 1 == await collection.count_documents({})


async def test_malformed_documents_are_ignored(store: tuple[FlagStore, Any]) -> None:
    """A document someone wrote by hand with a bad key or a non-boolean state switches nothing."""
    flags, collection = store
    await collection.insert_many(
        [{"_id": "chat", "enabled": "no"}, {"_id": "Bad Key", "enabled": False}, {"_id": 7, "enabled": False}]
    )
    await flags.set("follow", False)
    assert {"follow": False} == (await flags.read()).states


async def test_a_worker_keeps_its_last_reading_when_mongodb_is_gone(
    store: tuple[FlagStore, Any], closed_port: int
) -> None:
    """LiveSwitches picks a change up on refresh; against a MongoDB that does not answer it keeps the state."""
    flags, _ = store
    live = LiveSwitches(flags)
    await flags.set("chat", False)
    async with _running(live):
        await asyncio.wait_for(_until(lambda: not live.enabled("chat.message")), 5)

    gone: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{closed_port}", serverSelectionTimeoutMS=100, timeoutMS=100
    )
    stranded = LiveSwitches(FlagStore(gone["fanout"]["fanoutflags"]))
    stranded.current = live.current
    try:
        with pytest.raises(PyMongoError):
            await stranded.refresh()
        async with _running(stranded):
            await asyncio.sleep(0.5)  # several failed refreshes
    finally:
        await gone.close()
    assert not stranded.enabled("chat.message")
    assert stranded.enabled("notification.new")


@asynccontextmanager
async def _running(live: LiveSwitches) -> AsyncIterator[None]:
    task = asyncio.create_task(live.run(every_s=0.05))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_the_dashboards_show_switched_off_events() -> None:
    """Grafana has a panel of outcome="disabled" by type, and the CloudWatch contract lists the outcome."""
    root = Path(__file__).resolve().parents[2]
    panels = json.loads((root / "deploy" / "grafana" / "fanout.json").read_text())["panels"]
    exprs = [
        t["expr"] for p in panels for t in p.get("targets", []) if "expr" in t
    ]  # CloudWatch panels have none
    assert any('outcome="disabled"' in e and "by (event_type)" in e for e in exprs)
    contract = (root / "deploy" / "metrics_contract.py").read_text()
    assert re.search(r'EVENT_OUTCOMES = \([^)]*"disabled"', contract)
