"""Typing indicators: who is typing where, so an automatic stop can tell whether it still applies.

Each ``started`` stores a fresh token for (conversation, user) in ``fanouttyping`` and schedules a
``chat.typing.stopped`` carrying that token (``fanout-check: typing:<token>``, delayed by
``FANOUT_TYPING_TIMEOUT_S``). When the worker receives it, it ends the burst only if the token is still
the one stored and the user still typing: a newer ``started`` replaced it (and scheduled its own stop), or an
explicit ``stopped`` already ended the burst and announced it, and in both cases the scheduled stop is
superseded. So the others see one stop per burst of typing, a few seconds after the last ``started``. The
document remembers which token ended it (``settled``), so the same scheduled stop received twice holds twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from ulid import ULID

COLLECTION = "fanouttyping"
#: A document outlives its scheduled stop by this much, then MongoDB's TTL monitor removes it.
KEEP_S = 120


def _key(conversation_id: str, user_id: str) -> str:
    return json.dumps([conversation_id, user_id], separators=(",", ":"))


class TypingStore:
    """Typing state per (conversation, user)."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection
        self._indexed = False

    async def start(self, conversation_id: str, user_id: str) -> str:
        """Record a ``started``; the token its scheduled stop carries (a ULID)."""
        if not self._indexed:  # once per process: the only writer makes its own TTL index
            await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
            self._indexed = True
        token = str(ULID())
        expires = datetime.now(UTC) + timedelta(seconds=KEEP_S)
        await self._col.update_one(
            {"_id": _key(conversation_id, user_id)},
            {"$set": {"token": token, "typing": True, "expiresAt": expires}},
            upsert=True,
        )
        return token

    async def stop(self, conversation_id: str, user_id: str) -> bool:
        """An explicit ``stopped``: True when the user was typing (then the stop is announced now)."""
        query = {"_id": _key(conversation_id, user_id), "typing": True}
        return (await self._col.update_one(query, {"$set": {"typing": False}})).modified_count > 0

    async def settle(self, conversation_id: str, user_id: str, token: str) -> bool:
        """A scheduled stop arrived: True when it still applies (no newer ``started``, no explicit stop),
        or when it already applied on an earlier receive of the same message."""
        key = _key(conversation_id, user_id)
        ended = await self._col.update_one(
            {"_id": key, "token": token, "typing": True}, {"$set": {"typing": False, "settled": token}}
        )
        if ended.modified_count:
            return True
        return await self._col.find_one({"_id": key, "settled": token}, {"_id": 1}) is not None
