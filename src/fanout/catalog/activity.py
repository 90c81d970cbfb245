"""``activity.*``: the social feed's incremental updates."""

from __future__ import annotations

from pydantic import Field

from fanout.catalog._base import Count, Id, Payload, Timestamp, event


class ActivityFeedUpdated(Payload):
    """New items are in the recipient's feed: show "n new" or fetch them."""

    new_count: Count
    item_ids: list[Id] = Field(default_factory=list, max_length=100)
    latest_at: Timestamp | None = None


EVENTS = (event("activity.feed.updated", ActivityFeedUpdated),)
