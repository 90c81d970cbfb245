"""``notification.*``: the notification list and the unread badge (the plan's first vertical slice)."""

from __future__ import annotations

from pydantic import Field

from fanout.catalog._base import Count, Id, Name, Payload, Text, Timestamp, Url, event


class NotificationNew(Payload):
    """A notification was created for the recipient: prepend it to the list, update the badge."""

    notification_id: Id
    kind: Name | None = Field(default=None, description="what it is about, e.g. follow, rsvp, mention")
    title: Text | None = None
    body: Text | None = None
    url: Url | None = Field(default=None, description="where the notification leads in the app")
    actor_id: Id | None = Field(default=None, description="the user whose action caused it")
    created_at: Timestamp | None = None
    unread_count: Count | None = Field(
        default=None, description="the recipient's unread count including this one"
    )


class NotificationRead(Payload):
    """Notifications were marked read (in another tab or device): mark them, set the badge."""

    notification_ids: list[Id] = Field(default_factory=list, max_length=1000)
    all: bool = Field(default=False, strict=True, description="every notification up to read_at was read")
    read_at: Timestamp | None = None
    unread_count: Count


class NotificationUnreadUpdated(Payload):
    """The unread badge changed: show ``unreadCount``."""

    unread_count: Count


EVENTS = (
    event("notification.new", NotificationNew),
    event("notification.read", NotificationRead),
    event("notification.unread.updated", NotificationUnreadUpdated),
)
