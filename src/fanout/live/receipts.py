"""Delivery and read receipts: the highest state of each (message, user), raised atomically.

``fanoutreceipts`` holds one document per conversation, message and acknowledging user with the rank of
its state (``delivered`` 1, ``read`` 2). An acknowledgement raises it with one conditional upsert: the
filter matches only a lower rank, so a duplicate or a regression (``delivered`` after ``read``) collides
on ``_id`` and changes nothing. Only a real increase is announced; one that could not be announced is
undone. Documents are kept ``KEEP_S`` (TTL).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

COLLECTION = "fanoutreceipts"
KEEP_S = 30 * 86400
AckState = Literal["delivered", "read"]
RANKS: dict[AckState, int] = {"delivered": 1, "read": 2}


class ReceiptStore:
    """The highest receipt state per (conversation, message, user)."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection
        self._indexed = False

    async def raise_to(
        self, conversation_id: str, message_id: str, user_id: str, state: AckState
    ) -> tuple[AckState, datetime | None]:
        """Raise the receipt to ``state``; the state it holds now, and the time when this call raised
        it (None for a duplicate or a regression, which change nothing)."""
        if not self._indexed:  # once per process: the only writer makes its own TTL index
            await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
            self._indexed = True
        key = json.dumps([conversation_id, message_id, user_id], separators=(",", ":"))
        now = datetime.now(UTC)
        rank = RANKS[state]
        try:
            await self._col.update_one(
                {"_id": key, "rank": {"$lt": rank}},
                {
                    "$set": {
                        "rank": rank,
                        "state": state,
                        "at": now,
                        "expiresAt": now + timedelta(seconds=KEEP_S),
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:  # the receipt already holds this state or a higher one
            doc = await self._col.find_one({"_id": key}, {"state": 1})
            held = doc.get("state") if doc is not None else None
            return (held if held in RANKS else state), None
        return state, now

    async def undo(self, conversation_id: str, message_id: str, user_id: str, at: datetime) -> None:
        """Forget a raise that could not be announced (the queue refused it), unless a later one replaced
        it: the client may then send the same acknowledgement again and be heard."""
        key = json.dumps([conversation_id, message_id, user_id], separators=(",", ":"))
        await self._col.delete_one({"_id": key, "at": at})
