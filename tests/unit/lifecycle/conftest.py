"""The Lambda entry point as a fresh container, configured as deployed, against SecantusDB."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import MongoClient

from fanout.lifecycle import aws
from fanout.lifecycle.metrics import LifecycleMetrics
from tests.conftest import Server

KEY = "k" * 40


@pytest.fixture
def handler(
    mongo_server: Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, MongoClient[dict[str, Any]]]]:
    """``lambda_handler`` configured as a deployed function; the records collection to look at."""
    db = f"lc_{secrets.token_hex(4)}"
    for key, value in {
        "FANOUT_ENV": "production",
        "FANOUT_MONGO_URI": mongo_server.url,
        "FANOUT_MONGO_DB": db,
        "FANOUT_JWT_SECRET": KEY,
        "FANOUT_CLOUDWATCH_EMF": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle",
    }.items():
        monkeypatch.setenv(key, value)
    reset()
    mongo: MongoClient[dict[str, Any]] = MongoClient(mongo_server.url, tz_aware=True)
    yield aws.lambda_handler, mongo
    mongo.drop_database(db)
    mongo.close()
    reset()


def reset() -> None:
    """A fresh container: no clients, no counts, the EMF setting read again."""
    if aws._loop is not None and aws._lifecycle is not None:
        aws._loop.run_until_complete(aws._lifecycle.services.store._col.database.client.close())
        aws._loop.close()
    aws._loop = aws._lifecycle = None
    aws._metrics = LifecycleMetrics(CollectorRegistry())
    aws._emf, aws._emf_checked = None, False
