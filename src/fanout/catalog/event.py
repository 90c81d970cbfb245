"""``event.*``: RSVPs and their counters, the user's upcoming RSVPs, saved events, live check-ins."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fanout.catalog._base import Count, Id, Name, Payload, Text, Timestamp, Url, event

_EVENT = ("eventId",)
RsvpStatus = Literal["going", "interested", "not_going"]


class AttendeePreview(Payload):
    """One face in an event's attendee preview."""

    user_id: Id
    name: Name | None = None
    avatar_url: Url | None = None


class EventRsvpUpdated(Payload):
    """An event's RSVPs changed: new participant counters and attendee previews for its page."""

    event_id: Id
    going_count: Count | None = None
    interested_count: Count | None = None
    capacity: Count | None = None
    attendee_previews: list[AttendeePreview] = Field(default_factory=list, max_length=50)
    user_id: Id | None = Field(default=None, description="whose RSVP changed, when the recipient may see it")
    status: RsvpStatus | None = None


class EventUpcomingUpdated(Payload):
    """The recipient's own RSVP changed (another tab or device): update "my upcoming RSVPs"."""

    event_id: Id
    status: Literal["going", "interested", "not_going", "removed"]
    title: Text | None = None
    starts_at: Timestamp | None = None


class EventSavedUpdated(Payload):
    """The recipient saved or unsaved an event (another tab or device)."""

    event_id: Id
    saved: bool = Field(strict=True)
    at: Timestamp | None = None


class EventAttendanceUpdated(Payload):
    """Live check-in counters of an event under way."""

    event_id: Id
    checked_in_count: Count
    going_count: Count | None = None
    capacity: Count | None = None


EVENTS = (
    event("event.rsvp.updated", EventRsvpUpdated, ordering=_EVENT, priority="bulk"),
    event("event.upcoming.updated", EventUpcomingUpdated, ordering=_EVENT),
    event("event.saved.updated", EventSavedUpdated, ordering=_EVENT),
    event("event.attendance.updated", EventAttendanceUpdated, ordering=_EVENT, priority="bulk"),
)
