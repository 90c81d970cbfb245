"""Who takes part in a conversation, and who may see a user's presence: questions only the product can
answer, asked through a function it names in settings, with defaults that read its MongoDB.

- ``FANOUT_PARTICIPANTS_RESOLVER`` (``package.module:function(conversation_id) -> list of user ids``, plain
  or async). Without it: the document of ``FANOUT_CONVERSATIONS_COLLECTION`` (``conversations``) whose
  ``FANOUT_CONVERSATION_ID_FIELD`` (``_id``) is the id, its ``FANOUT_PARTICIPANTS_FIELD`` (``participants``)
  list. One query on an indexed field each, so a client naming random conversations costs index lookups.
- ``FANOUT_PRESENCE_AUDIENCE`` (``package.module:function(user_id) -> list of user ids``). Without it:
  everyone who shares a conversation with the user, read from the same collection.

Ids may be strings or ObjectIds in the product's documents: a 24-hex id is looked up both ways, and
ObjectIds come back as their hex strings. An answer is capped at ``MAX_AUDIENCE`` users. A function that
raises makes the action fail (the client gets ``internal_error``); nothing is guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from fanout import hooks

#: Users one resolver answer may name; more are cut (a target holds at most 100,000).
MAX_AUDIENCE = 10_000


def _forms(ident: str) -> list[Any]:
    """How an id may be stored: the string, and the ObjectId a 24-hex string also is."""
    return [ident, ObjectId(ident)] if ObjectId.is_valid(ident) and len(ident) == 24 else [ident]


def user_ids(values: Any) -> list[str]:
    """The user ids in a resolver's answer or a stored list: strings and ObjectIds, once each, in order;
    anything else is left out."""
    if not isinstance(values, list | tuple | set | frozenset):
        return []
    out: dict[str, None] = {}
    for value in values:
        text = str(value) if isinstance(value, ObjectId) else value
        if isinstance(text, str) and 0 < len(text) <= 256:
            out[text] = None
        if len(out) >= MAX_AUDIENCE:
            break
    return list(out)


class Participants:
    """The user ids of a conversation."""

    def __init__(
        self,
        conversations: AsyncCollection[dict[str, Any]],
        field: str,
        hook: Callable[..., Any] | None,
        id_field: str = "_id",
    ) -> None:
        self._col, self._field, self._hook, self._id_field = conversations, field, hook, id_field

    async def of(self, conversation_id: str) -> list[str]:
        """Everyone in the conversation; empty when it is unknown."""
        if self._hook is not None:
            return user_ids(await hooks.call(self._hook, conversation_id))
        doc = await self._col.find_one({self._id_field: {"$in": _forms(conversation_id)}}, {self._field: 1})
        return user_ids(doc.get(self._field)) if doc is not None else []


class PresenceAudience:
    """Who may see a user's presence."""

    def __init__(
        self, conversations: AsyncCollection[dict[str, Any]], field: str, hook: Callable[..., Any] | None
    ) -> None:
        self._col, self._field, self._hook = conversations, field, hook

    async def of(self, user_id: str) -> list[str]:
        """The users who may see ``user_id`` come and go (never the user themself)."""
        if self._hook is not None:
            found = user_ids(await hooks.call(self._hook, user_id))
        else:
            query = {self._field: {"$in": _forms(user_id)}}
            found = user_ids(await self._col.distinct(self._field, query))
        return [u for u in found if u != user_id]

    async def visible(self, viewer: str, users: Iterable[str]) -> set[str]:
        """Which of ``users`` the ``viewer`` may see: themself, and those whose audience holds them."""
        wanted = set(users)
        seen = {viewer} & wanted
        others = sorted(wanted - seen)
        if not others:
            return seen
        if self._hook is not None:
            audiences = await asyncio.gather(*(self.of(u) for u in others))
            return seen | {u for u, audience in zip(others, audiences, strict=True) if viewer in audience}
        # One query: the conversations of the viewer that hold any of the others.
        forms = [form for u in others for form in _forms(u)]
        query = {"$and": [{self._field: {"$in": _forms(viewer)}}, {self._field: {"$in": forms}}]}
        async for doc in self._col.find(query, {self._field: 1}):
            seen |= wanted & set(user_ids(doc.get(self._field)))
        return seen
