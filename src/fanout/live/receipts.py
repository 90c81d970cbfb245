"""Delivery and read receipts: the highest state of each (message, user), raised atomically.

``fanoutreceipts`` holds one document per conversation, message and acknowledging user with the rank of
its state (``delivered`` 1, ``read`` 2). An acknowledgement raises it with one conditional upsert: the
filter matches only a lower rank, so a duplicate or a regression (``delivered`` after ``read``) collides
on ``_id`` and changes nothing. Only a real increase is announced; one that could not be announced is
undone. Documents are kept ``KEEP_S`` (TTL). A document whose ``rank`` is no rank (missing, text, NaN, a
boolean, an array, any number but 1 or 2) holds no receipt and is raised over like a lower one.
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
STATES: dict[int, AckState] = {rank: state for state, rank in RANKS.items()}


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
                {
                    "_id": key,
                    "$or": [  # a lower rank, or none (an array matched $lt and $in by an element)
                        {"rank": {"$lt": rank}},
                        {"rank": {"$not": {"$in": list(STATES)}}},
                        {"rank": {"$type": "array"}},
                    ],
                },
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
        except DuplicateKeyError:  # the receipt already holds this state or a higher one: its rank says which
            doc = await self._col.find_one({"_id": key}, {"rank": 1})
            held = doc.get("rank") if doc is not None else None
            rank_held = held if isinstance(held, int | float) and not isinstance(held, bool) else 0
            return (STATES[int(rank_held)] if rank_held in STATES else state), None
        return state, now

    async def undo(self, conversation_id: str, message_id: str, user_id: str, at: datetime) -> None:
        """Forget a raise that could not be announced (the queue refused it), unless a later one replaced
        it: the client may then send the same acknowledgement again and be heard."""
        key = json.dumps([conversation_id, message_id, user_id], separators=(",", ":"))
        await self._col.delete_one({"_id": key, "at": at})
