"""Connection tickets: short-lived (at most 60 s), single-use, bound to one user.

A domain service mints a ticket for its signed-in user just before the client connects
(``wss://…/prod?ticket=fot_…``), so no long-lived token travels in a URL, where proxies and browser
histories keep it. MongoDB holds only the SHA-256 of a ticket (as ``_id``), its user and its expiry,
never the ticket itself: a reader of the collection can redeem nothing.

Redeeming is one ``find_one_and_delete`` filtered on the hash and ``expiresAt > now``: of two connects
presenting the same ticket at the same moment exactly one gets the document, and an expired ticket is
refused even before MongoDB's TTL monitor (about once a minute) removes it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.asynchronous.collection import AsyncCollection

from fanout.config import Settings
from fanout.tokens import MAX_USER_ID_CHARS  # a ticket's user id is bounded as a token's

PREFIX = "fot_"
MAX_TTL_S = 60
_TICKET = re.compile(r"fot_[A-Za-z0-9_-]{43}")  # 32 random bytes, base64url
_TTL_INDEX: dict[str, Any] = {"expireAfterSeconds": 0, "name": "expiresAt_ttl"}


def digest(ticket: str) -> str:
    """What MongoDB stores for a ticket. A ticket is 256 random bits, so a plain hash cannot be reversed."""
    return hashlib.sha256(ticket.encode()).hexdigest()


def _check(user_id: str, ttl_s: int) -> None:
    """``ValueError`` for what no ticket may carry, before MongoDB is asked anything."""
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_CHARS:
        raise ValueError("a ticket's user id is 1 to 256 characters")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"a ticket lives 1 to {MAX_TTL_S} seconds")


def _new(user_id: str, ttl_s: int) -> tuple[str, dict[str, Any]]:
    _check(user_id, ttl_s)
    ticket = PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_s)
    doc = {"_id": digest(ticket), "userId": user_id, "createdAt": now, "expiresAt": expires}
    return ticket, doc


class TicketStore:
    """Tickets in MongoDB for asyncio code: the lifecycle redeems, an asyncio service mints."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection
        self._indexed = False

    async def ensure_indexes(self) -> None:
        """The TTL index that removes expired tickets; safe to call on every start."""
        await self._col.create_index([("expiresAt", ASCENDING)], **_TTL_INDEX)
        self._indexed = True

    async def mint(self, user_id: str, ttl_s: int = 30) -> str:
        """A new ticket for ``user_id``, valid once within ``ttl_s`` seconds (at most 60)."""
        ticket, doc = _new(user_id, ttl_s)
        if not self._indexed:  # whoever mints makes sure unused tickets are removed
            await self.ensure_indexes()
        await self._col.insert_one(doc)
        return ticket

    async def redeem(self, ticket: str | None) -> str | None:
        """The user of a valid ticket, which is used up; None for an unknown, used or expired one."""
        if not isinstance(ticket, str) or not _TICKET.fullmatch(ticket):
            return None
        now = datetime.now(UTC)
        doc = await self._col.find_one_and_delete(
            {"_id": digest(ticket), "expiresAt": {"$gt": now}}, projection={"userId": 1, "expiresAt": 1}
        )
        if doc is None:
            return None
        # A document mint() never writes is used up and refused: an expiresAt that is an array ($gt matched
        # any element) or further ahead than a ticket lives (the TTL index would keep it as long), a user id
        # a token's sub could not be either.
        expires, user = doc.get("expiresAt"), doc.get("userId")
        if not isinstance(expires, datetime):
            return None
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # a client without tz_aware
        if expires > now + timedelta(seconds=2 * MAX_TTL_S):  # MAX_TTL_S more for the minter's clock
            return None
        return user if isinstance(user, str) and 0 < len(user) <= MAX_USER_ID_CHARS else None


class Tickets:
    """Mints tickets for a synchronous domain service; create once per process and reuse."""

    def __init__(self, settings: Settings | None = None, client: MongoClient[dict[str, Any]] | None = None):
        self.settings = settings or Settings()
        s = self.settings
        self._own = client is None
        timeout = s.mongo_timeout_ms
        self._client: MongoClient[dict[str, Any]] = client or MongoClient(
            s.mongo(), tz_aware=True, serverSelectionTimeoutMS=timeout, timeoutMS=timeout
        )
        self._col = self._client[s.mongo_db][s.tickets_collection]
        self._indexed = False

    def mint(self, user_id: str, ttl_s: int | None = None) -> str:
        """A new ticket for ``user_id``, valid once within ``ttl_s`` (default ``FANOUT_TICKET_TTL_S``)."""
        # checked before MongoDB is asked anything: a bad user id or lifetime is the caller's error
        ticket, doc = _new(user_id, self.settings.ticket_ttl_s if ttl_s is None else ttl_s)
        if not self._indexed:
            self._col.create_index([("expiresAt", ASCENDING)], **_TTL_INDEX)
            self._indexed = True
        self._col.insert_one(doc)
        return ticket

    def close(self) -> None:
        if self._own:
            self._client.close()


def mint(user_id: str, *, settings: Settings | None = None, ttl_s: int | None = None) -> str:
    """One ticket for ``user_id``, with a MongoDB client opened for this call (scripts, ``fanout ticket``);
    a service mints many through one ``Tickets`` instead. A bad user id or lifetime is refused before
    the client is opened (opening and closing one takes about a second)."""
    settings = settings or Settings()
    _check(user_id, settings.ticket_ttl_s if ttl_s is None else ttl_s)
    tickets = Tickets(settings)
    try:
        return tickets.mint(user_id, ttl_s)
    finally:
        tickets.close()
