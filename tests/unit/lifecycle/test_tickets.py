"""Connection tickets: short-lived, single-use, bound to one user; MongoDB holds only their hash."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import MongoClient

from fanout.lifecycle import Lifecycle
from fanout.tickets import Tickets, TicketStore, digest, mint
from fanout.tokens import sign
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import MakeLifecycle


async def _connect(lc: Lifecycle, cid: str, ticket: str | None = None, token: str | None = None) -> int:
    return int((await lc.handle(events.connect(cid, token=token, ticket=ticket)))["statusCode"])


async def test_a_ticket_connects_its_user_once(make_lifecycle: MakeLifecycle) -> None:
    """A minted ticket connects once, as its user; presented again it is refused with 401."""
    lc = await make_lifecycle()
    ticket = await lc.services.tickets.mint("u1")
    assert 200 == await _connect(lc, "c1", ticket=ticket)
    record = await lc.services.store.get("c1")
    assert record is not None and "u1" == record["userId"]
    assert 401 == await _connect(lc, "c2", ticket=ticket)
    assert await lc.services.store.get("c2") is None


async def test_an_expired_ticket_is_refused(make_lifecycle: MakeLifecycle) -> None:
    """A ticket past its lifetime is refused even while its document still exists (the TTL monitor is slow)."""
    lc = await make_lifecycle()
    ticket = await lc.services.tickets.mint("u1", ttl_s=1)
    await lc.services.tickets._col.drop_index("expiresAt_ttl")  # SecantusDB's minutely sweep cannot take it
    await asyncio.sleep(1.1)
    assert 1 == await lc.services.tickets._col.count_documents({})
    assert 401 == await _connect(lc, "c1", ticket=ticket)


@pytest.mark.parametrize(
    "ticket",
    ["", "fot_" + "A" * 43, "not-a-ticket", "fot_" + "A" * 4000, "fot_" + "é" * 43],
    ids=["empty", "unknown", "garbage", "huge", "non-ascii"],
)
async def test_an_unknown_or_malformed_ticket_is_refused(make_lifecycle: MakeLifecycle, ticket: str) -> None:
    """A ticket nobody minted, or that is not ticket-shaped, is a 401."""
    lc = await make_lifecycle()
    assert 401 == await _connect(lc, "c1", ticket=ticket)


async def test_two_connects_with_one_ticket_at_the_same_moment_cannot_both_succeed(
    make_lifecycle: MakeLifecycle,
) -> None:
    """Ten $connects presenting the same ticket at once: exactly one is let in."""
    lc = await make_lifecycle()
    ticket = await lc.services.tickets.mint("u1")
    answers = await asyncio.gather(*(_connect(lc, f"c{i}", ticket=ticket) for i in range(10)))
    assert [200] + [401] * 9 == sorted(answers)


async def test_only_the_hash_of_a_ticket_is_stored(make_lifecycle: MakeLifecycle) -> None:
    """The tickets collection holds the SHA-256 of a ticket, its user and expiry, never the ticket."""
    lc = await make_lifecycle()
    ticket = await lc.services.tickets.mint("u1", ttl_s=60)
    [doc] = await lc.services.tickets._col.find({}).to_list(None)
    assert hashlib.sha256(ticket.encode()).hexdigest() == doc["_id"]
    assert {"_id", "userId", "createdAt", "expiresAt"} == set(doc)
    assert ticket not in repr(doc) and ticket.removeprefix("fot_") not in repr(doc)
    assert 59 <= (doc["expiresAt"] - doc["createdAt"]).total_seconds() <= 60


async def test_expired_tickets_are_removed_by_a_ttl_index(make_lifecycle: MakeLifecycle) -> None:
    """The tickets collection has a TTL index on expiresAt, so unused tickets do not pile up; an asyncio
    service's TicketStore creates it on its first mint."""
    lc = await make_lifecycle()
    fresh = TicketStore(lc.services.store.database["tickets_minted_by_a_service"])
    await fresh.mint("u1")
    for col in (lc.services.tickets._col, fresh._col):
        indexes = await col.index_information()
        assert any(
            i["key"] == [("expiresAt", 1)] and i.get("expireAfterSeconds") == 0 for i in indexes.values()
        )


async def test_a_ticket_alone_decides_even_beside_a_valid_token(make_lifecycle: MakeLifecycle) -> None:
    """With ?ticket= present a bad ticket is a 401 whatever token comes with it: no fallback."""
    lc = await make_lifecycle()
    token = sign("u1", lc.services.settings.jwt_key())
    assert 401 == await _connect(lc, "c1", ticket="fot_" + "B" * 43, token=token)


async def test_token_connect_can_be_switched_off(make_lifecycle: MakeLifecycle) -> None:
    """FANOUT_JWT_CONNECT=false: a valid token is refused, a ticket still connects."""
    lc = await make_lifecycle(jwt_connect=False)
    assert 401 == await _connect(lc, "c1", token=sign("u1", lc.services.settings.jwt_key()))
    assert 200 == await _connect(lc, "c2", ticket=await lc.services.tickets.mint("u1"))


async def test_a_synchronous_service_mints_tickets_the_lifecycle_accepts(
    make_lifecycle: MakeLifecycle,
) -> None:
    """fanout.tickets.mint and a reused Tickets (pymongo, no event loop of their own) write tickets that
    connect; a lifetime over 60 s or an empty user id is refused when minting."""
    lc = await make_lifecycle()
    settings = lc.services.settings
    one = await asyncio.to_thread(mint, "u1", settings=settings)
    tickets = await asyncio.to_thread(Tickets, settings)
    two = await asyncio.to_thread(tickets.mint, "u2", 10)
    with pytest.raises(ValueError, match="1 to 60"):
        tickets.mint("u3", 61)
    with pytest.raises(ValueError, match="user id"):
        tickets.mint("", 10)
    tickets.close()
    assert (200, 200) == (await _connect(lc, "c1", ticket=one), await _connect(lc, "c2", ticket=two))
    users = [(await lc.services.store.get(c) or {}).get("userId") for c in ("c1", "c2")]
    assert ["u1", "u2"] == users


def test_tickets_reuse_a_client_they_are_given(mongo_server: object) -> None:
    """Tickets(client=...) uses the service's own MongoClient and leaves it open on close."""
    client: MongoClient[dict[str, object]] = MongoClient(mongo_server.url, tz_aware=True)  # type: ignore[attr-defined]
    from tests.conftest import dev_settings

    settings = dev_settings(mongo=mongo_server)  # type: ignore[arg-type]
    tickets = Tickets(settings, client)
    assert tickets.mint("u1").startswith("fot_")
    tickets.close()
    assert 1 == client[settings.mongo_db][settings.tickets_collection].count_documents({})
    client.drop_database(settings.mongo_db)
    client.close()


@pytest.mark.parametrize(
    ("user", "expires_in"),
    [
        ("u" * 257, timedelta(seconds=30)),
        ("u1", timedelta(days=365)),
        ("u1", [timedelta(seconds=-30), timedelta(days=365)]),
        ("u1", [timedelta(seconds=30)]),
        ("u1", "tomorrow"),
    ],
    ids=["user-id-too-long", "a-year-ahead", "array-past-and-ahead", "array", "text"],
)
async def test_a_ticket_document_no_mint_writes_is_refused(
    make_lifecycle: MakeLifecycle, user: str, expires_in: object
) -> None:
    """A ticket document of a shape mint() never writes (a user id over 256 characters, which a token's
    sub may not be either; an expiry further ahead than a ticket lives, which the TTL index would keep for
    as long; an expiresAt that is an array, which MongoDB's $gt matches by any element) is used up and
    refused with 401, never connected."""
    lc = await make_lifecycle()
    ticket = "fot_" + "C" * 43
    now = datetime.now(UTC)
    expires = (
        [now + e for e in expires_in]
        if isinstance(expires_in, list)
        else now + expires_in
        if isinstance(expires_in, timedelta)
        else expires_in
    )
    doc = {"_id": digest(ticket), "userId": user, "createdAt": now, "expiresAt": expires}
    await lc.services.tickets._col.insert_one(doc)
    assert 401 == await _connect(lc, "c1", ticket=ticket)
    assert await lc.services.store.get("c1") is None
