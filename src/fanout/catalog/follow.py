"""``follow.*``: the follow-request inbox."""

from __future__ import annotations

from typing import Literal

from fanout.catalog._base import Id, Name, Payload, Timestamp, Url, event


class FollowRequestCreated(Payload):
    """Someone asked to follow the recipient: add it to the inbox."""

    request_id: Id
    from_user_id: Id
    to_user_id: Id
    from_user_name: Name | None = None
    from_user_avatar_url: Url | None = None
    created_at: Timestamp | None = None


class FollowRequestUpdated(Payload):
    """A follow request was accepted, rejected or cancelled: update or remove it."""

    request_id: Id
    status: Literal["pending", "accepted", "rejected", "cancelled"]
    from_user_id: Id | None = None
    to_user_id: Id | None = None
    updated_at: Timestamp | None = None


EVENTS = (
    event("follow.request.created", FollowRequestCreated, ordering=("requestId",)),
    event("follow.request.updated", FollowRequestUpdated, ordering=("requestId",)),
)
