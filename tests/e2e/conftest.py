"""A local stack with short timings for typing, presence, receipts and counters: the automatic typing stop
after 1 s, the presence grace 2 s, a census every second and a conflation window of 300 ms, so each test
waits seconds rather than minutes; organization topics are the product's (``product.may_follow``). Tests
keep apart by their own user, conversation, organization and event ids."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.conftest import Stack, stack_env, start_stack, stop_stack_later

LIVE_ENV = {
    "FANOUT_TYPING_TIMEOUT_S": "1",
    "FANOUT_PRESENCE_GRACE_S": "2",
    "FANOUT_CENSUS_INTERVAL_S": "1",
    "FANOUT_CONFLATE_MS": "300",
    "FANOUT_TOPIC_POLICY": "tests.e2e.product:may_follow",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests share one test process (``make test`` runs one per core): the live stack
    then starts once per run, not once per process."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """`fanout dev` with the short timings above."""
    running = start_stack(tmp_path_factory.mktemp("live"), stack_env(**LIVE_ENV))
    yield running
    stop_stack_later(running)


@pytest.fixture
async def product_db(live_stack: Stack) -> AsyncIterator[Any]:
    """The stack's database, where the product's conversations live (and fanout's records)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(live_stack.settings.mongo(), tz_aware=True)
    yield client[live_stack.settings.mongo_db]
    await client.close()


def uid(name: str) -> str:
    """A user, conversation or event id of this test alone."""
    return f"{name}-{secrets.token_hex(4)}"
