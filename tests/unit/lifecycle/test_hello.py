"""hello: the first frame agrees on a protocol, tells the client its connection id, and stores on the
record what the connection speaks."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.lifecycle.hello import HEARTBEAT_S, SERVER_PROTOCOLS
from fanout.tokens import sign
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import MakeLifecycle, send


async def _connected(make_lifecycle: MakeLifecycle, cid: str = "c1", user: str = "u1") -> Any:
    lc = await make_lifecycle()
    answer = await lc.handle(events.connect(cid, token=sign(user, lc.services.settings.jwt_key())))
    assert 200 == answer["statusCode"]
    return lc


async def test_hello_answers_the_connection_id_and_the_servers_terms(make_lifecycle: MakeLifecycle) -> None:
    """The documented hello gets system.connected with the connection id, the user, protocol 1, the
    heartbeat interval and whether resume is offered, echoing the frame's id."""
    lc = await _connected(make_lifecycle, "Xk2pQ9=", "u7")
    answer = await send(lc, "Xk2pQ9=", {"action": "hello", "id": "h1", "protocols": [1]}, route="hello")
    assert {"v", "type", "payload", "sentAt", "replyTo"} == set(answer)
    assert ("system.connected", "h1") == (answer["type"], answer["replyTo"])
    payload = answer["payload"]
    assert {"connectionId": "Xk2pQ9=", "userId": "u7", "protocol": 1, "heartbeatS": HEARTBEAT_S} == {
        k: payload[k] for k in ("connectionId", "userId", "protocol", "heartbeatS")
    }
    assert isinstance(payload["resume"], bool)
    record = await lc.services.store.get("Xk2pQ9=")
    assert record is not None and 1 == record["protocol"] and "payloads" not in record


async def test_the_highest_common_protocol_is_chosen(make_lifecycle: MakeLifecycle) -> None:
    """A client naming versions the server does not know as well as 1 gets the highest both speak."""
    lc = await _connected(make_lifecycle)
    answer = await send(lc, "c1", {"action": "hello", "protocols": [3, 1, 2]})
    assert max(SERVER_PROTOCOLS) == answer["payload"]["protocol"]


async def test_no_protocol_in_common_is_refused_with_the_servers_list(make_lifecycle: MakeLifecycle) -> None:
    """protocols [2, 3] share nothing with the server: system.error unsupported_protocol lists what it speaks,
    and the record is left as it was."""
    lc = await _connected(make_lifecycle)
    answer = await send(lc, "c1", {"action": "hello", "id": "h2", "protocols": [2, 3]})
    assert ("system.error", "h2") == (answer["type"], answer["replyTo"])
    assert {"code": "unsupported_protocol", "supported": list(SERVER_PROTOCOLS)} == answer["payload"]
    record = await lc.services.store.get("c1")
    assert record is not None and "protocol" not in record


async def test_declared_payload_versions_are_stored_and_a_later_hello_replaces_them(
    make_lifecycle: MakeLifecycle,
) -> None:
    """payloads {type: [versions]} is stored as type@version entries; a hello without it unsets them."""
    lc = await _connected(make_lifecycle)
    frame = {
        "action": "hello",
        "protocols": [1],
        "payloads": {"chat.message": [2, 1, 2], "user.presence.updated": [1]},
    }
    assert "system.connected" == (await send(lc, "c1", frame))["type"]
    record = await lc.services.store.get("c1")
    assert record is not None
    assert ["chat.message@1", "chat.message@2", "user.presence.updated@1"] == sorted(record["payloads"])
    await send(lc, "c1", {"action": "hello", "protocols": [1]})
    record = await lc.services.store.get("c1")
    assert record is not None and "payloads" not in record


BAD_HELLOS = [
    ("protocols not a list", {"protocols": 1}),
    ("protocols empty", {"protocols": []}),
    ("a protocol that is a string", {"protocols": ["1"]}),
    ("a protocol that is a boolean", {"protocols": [True]}),
    ("a protocol of zero", {"protocols": [0]}),
    ("too many protocols", {"protocols": list(range(1, 30))}),
    ("payloads a list", {"payloads": ["chat.message"]}),
    ("a type of no domain", {"payloads": {"message": [1]}}),
    ("a version that is a float", {"payloads": {"chat.message": [1.0]}}),
    ("a version out of range", {"payloads": {"chat.message": [1001]}}),
    ("versions empty", {"payloads": {"chat.message": []}}),
    ("too many types", {"payloads": {f"chat.t{i}": [1] for i in range(201)}}),
]


@pytest.mark.parametrize(("case", "extra"), BAD_HELLOS, ids=[b[0] for b in BAD_HELLOS])
async def test_a_malformed_hello_is_refused_and_stores_nothing(
    make_lifecycle: MakeLifecycle, case: str, extra: dict[str, Any]
) -> None:
    """A hello whose protocols or payloads are not what section 12 describes gets bad_hello."""
    lc = await _connected(make_lifecycle)
    answer = await send(lc, "c1", {"action": "hello", **extra})
    assert ("system.error", "bad_hello") == (answer["type"], answer["payload"]["code"])
    record = await lc.services.store.get("c1")
    assert record is not None and "protocol" not in record and "payloads" not in record


async def test_a_hello_without_protocols_is_protocol_1(make_lifecycle: MakeLifecycle) -> None:
    """protocols may be left out: the client then speaks protocol 1, as every client before hello did."""
    lc = await _connected(make_lifecycle)
    assert 1 == (await send(lc, "c1", {"action": "hello"}))["payload"]["protocol"]


async def test_hello_from_an_unknown_connection_is_refused(make_lifecycle: MakeLifecycle) -> None:
    """A hello on a connection without a record gets unknown_connection, like any frame."""
    lc = await make_lifecycle()
    answer = await send(lc, "ghost", {"action": "hello", "protocols": [1]})
    assert "unknown_connection" == answer["payload"]["code"]
