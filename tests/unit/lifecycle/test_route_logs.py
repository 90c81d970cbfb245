"""A route that fails on MongoDB logs why (the error, its code) but none of the values MongoDB's message
quotes: the raw connection id, the token, the record."""

from __future__ import annotations

import json
from typing import Any

from pymongo import ASCENDING
from pymongo.collation import Collation

from fanout.config import DEV_JWT_SECRET
from fanout.lifecycle import Lifecycle
from fanout.tokens import sign
from tests.unit.conftest import ReadLogs
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import MakeLifecycle

#: Two API Gateway connection ids that differ only in case.
FIRST = "L0SM9cOFvHcCIhw="
SECOND = FIRST.swapcase()


def _records(lc: Lifecycle) -> Any:
    return lc.services.store.database[lc.services.settings.connections_collection]


def _failures(read: ReadLogs) -> tuple[list[dict[str, Any]], str]:
    lines = read()
    return [line for line in lines if line["event"] == "route_failed"], json.dumps(lines)


async def test_a_duplicate_key_on_connect_logs_the_code_not_the_id(
    make_lifecycle: MakeLifecycle, json_logs: ReadLogs
) -> None:
    """A $connect refused by a case-insensitive unique index (as an existing API may have built it) is
    answered 500 and logged as DuplicateKeyError code 11000 on connectionId, without either raw id."""
    lc = await make_lifecycle()
    records = _records(lc)
    await records.drop_index("connectionId_1")
    await records.create_index(
        [("connectionId", ASCENDING)], unique=True, collation=Collation("en", strength=2)
    )
    token = sign("u1", DEV_JWT_SECRET)
    assert 200 == (await lc.handle(events.connect(FIRST, token=token)))["statusCode"]

    assert 500 == (await lc.handle(events.connect(SECOND, token=token)))["statusCode"]

    [failure], text = _failures(json_logs)
    assert ("$connect", "DuplicateKeyError") == (failure["route"], failure["error"])
    assert "pymongo.errors.DuplicateKeyError: code 11000 index connectionId" in failure["exception"]
    assert "in put" in failure["exception"]  # the frames stay: file, line and function
    for secret in (FIRST, SECOND, token):
        assert secret not in text


async def test_a_refused_record_logs_the_code_not_the_document(
    make_lifecycle: MakeLifecycle, json_logs: ReadLogs
) -> None:
    """A $connect whose record the collection's schema validator refuses is logged as WriteError code 121,
    without the refused document (MongoDB quotes the failing value: here the raw connection id)."""
    lc = await make_lifecycle()
    rule = {"connectionId": {"bsonType": "string", "pattern": "^[A-Za-z0-9+/]{15}=$"}}
    await lc.services.store.database.command(
        "collMod",
        lc.services.settings.connections_collection,
        validator={"$jsonSchema": {"properties": rule}},
    )
    hostile = "not-an-api-gateway-id"
    token = sign("u1", DEV_JWT_SECRET)

    assert 500 == (await lc.handle(events.connect(hostile, token=token)))["statusCode"]

    [failure], text = _failures(json_logs)
    assert ("$connect", "WriteError") == (failure["route"], failure["error"])
    assert "pymongo.errors.WriteError: code 121" in failure["exception"]
    assert hostile not in text
    assert token not in text
