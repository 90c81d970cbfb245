"""A WebSocket connect that the lifecycle fails on MongoDB is logged by its reason, never by the raw
connection id, the token or the connect URL that MongoDB's error or the request carried."""

from __future__ import annotations

import json

import aiohttp
import pytest
from pymongo import ASCENDING
from pymongo.collation import Collation

from fanout.local.emulator import CHOSEN_ID
from fanout.tokens import sign
from tests.unit.conftest import ReadLogs
from tests.unit.local.conftest import Running

#: Two connection ids that differ only in case, as API Gateway's may.
FIRST = "Qm9vS2lkQ2FzZTE="
SECOND = FIRST.swapcase()


async def test_a_duplicate_key_on_a_socket_connect_logs_no_id_token_or_url(
    running: Running, json_logs: ReadLogs
) -> None:
    """Over a case-insensitive unique index on connectionId, a second socket whose id differs only in case
    is refused 500; the route_failed line names DuplicateKeyError code 11000 and none of the secrets."""
    records = running.store.database[running.collection]
    await records.create_index(
        [("connectionId", ASCENDING)], unique=True, collation=Collation("en", strength=2)
    )
    token = sign("u1", running.key)
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(running.url, params={"token": token, CHOSEN_ID: FIRST})
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(running.url, params={"token": token, CHOSEN_ID: SECOND})
        await first.close()
    assert 500 == refused.value.status

    lines = json_logs()
    [failure] = [line for line in lines if line["event"] == "route_failed"]
    assert ("$connect", "DuplicateKeyError") == (failure["route"], failure["error"])
    assert "DuplicateKeyError: code 11000 index connectionId" in failure["exception"]
    text = json.dumps(lines)
    for secret in (FIRST, SECOND, token, f"{running.url}?"):
        assert secret not in text
