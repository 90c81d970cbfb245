"""Writing an event into the outbox within the caller's MongoDB transaction.

An entry is ``{_id, eventId, type, body, size, createdAt}``: ``body`` is the v1 queue body as the
relay will send it, so a resend carries the same event id. The relay adds ``relayedAt`` once SQS has
the event (and ``error`` when SQS refused it for good); a TTL index removes relayed entries after
``FANOUT_OUTBOX_RETENTION_S``, and unrelayed ones are kept.

The insertion sequence is ``_id``, an ObjectId the driver makes: increasing within one writer process,
ordered by the second across processes. A counter document would order writers strictly, but every
transaction would then update one document, and concurrent ones would abort on write conflicts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database

from fanout.envelope import MAX_BODY_BYTES, QueueBody
from fanout.errors import InvalidMessage

COLLECTION = "fanout_outbox"
#: Entries the relay has not sent yet, oldest first.
PENDING: dict[str, Any] = {"relayedAt": None}
ORDER = [("_id", ASCENDING)]


def document(event: QueueBody) -> dict[str, Any]:
    """The outbox entry of ``event``; ``InvalidMessage("too_large")`` over SQS's 1 MiB."""
    body = event.to_json()
    size = len(body.encode())
    if size > MAX_BODY_BYTES:
        raise InvalidMessage("too_large", f"body of {size} bytes is over {MAX_BODY_BYTES}")
    return {
        "eventId": event.id,
        "type": event.type,
        "body": body,
        "size": size,
        "createdAt": datetime.now(UTC),
    }


def indexes(retention_s: int) -> list[IndexModel]:
    """The pending entries in order, and the expiry of relayed ones."""
    return [
        IndexModel([("relayedAt", ASCENDING), ("_id", ASCENDING)], name="pending"),
        IndexModel([("relayedAt", ASCENDING)], name="relayed_ttl", expireAfterSeconds=retention_s),
    ]


def _in_transaction(session: Any) -> None:
    if session is None or not session.in_transaction:
        raise ValueError(
            "outbox.add needs the session of an open transaction (with session.start_transaction(): ...), "
            "so the event is written only if the domain change commits"
        )


class Outbox:
    """The outbox of a domain service's database, with pymongo's synchronous client."""

    def __init__(self, database: Database[Any], collection: str = COLLECTION) -> None:
        self.collection: Collection[Any] = database[collection]

    def add(self, session: ClientSession, event: QueueBody) -> str:
        """Write ``event`` in the session's transaction; it leaves for SQS only if that commits.
        Returns the event id."""
        _in_transaction(session)
        self.collection.insert_one(document(event), session=session)
        return event.id


class AsyncOutbox:
    """The outbox with pymongo's ``AsyncMongoClient``."""

    def __init__(self, database: AsyncDatabase[Any], collection: str = COLLECTION) -> None:
        self.collection: AsyncCollection[Any] = database[collection]

    async def add(self, session: AsyncClientSession, event: QueueBody) -> str:
        """Write ``event`` in the session's transaction; returns the event id."""
        _in_transaction(session)
        await self.collection.insert_one(document(event), session=session)
        return event.id
