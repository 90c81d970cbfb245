"""The product's side of the live stack: organization memberships in its own collection, and the topic
policy that reads them (the live stack's ``FANOUT_TOPIC_POLICY``). It runs inside the stack's gateway,
which has the stack's ``FANOUT_MONGO_*`` variables; a test changes memberships through ``product_db``."""

from __future__ import annotations

import os
from typing import Any

from pymongo import AsyncMongoClient

#: One document per membership: ``{"_id": "<organization id>:<user id>"}``.
MEMBERS = "organizationmembers"
_client: AsyncMongoClient[dict[str, Any]] | None = None


def member_id(organization: str, user: str) -> str:
    """The membership document's id."""
    return f"{organization}:{user}"


async def may_follow(user_id: str, topic: str) -> bool:
    """``organization:<id>`` for the organization's members; every other gated kind is refused."""
    global _client
    kind, _, organization = topic.partition(":")
    if kind != "organization":
        return False
    if _client is None:  # created in the gateway's own event loop, on the first subscribe
        _client = AsyncMongoClient(os.environ["FANOUT_MONGO_URI"])
    members = _client[os.environ["FANOUT_MONGO_DB"]][MEMBERS]
    return await members.find_one({"_id": member_id(organization, user_id)}) is not None
