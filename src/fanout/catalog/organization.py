"""``organization.*``: member and role changes, announcements."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fanout.catalog._base import Id, Name, Payload, Text, Timestamp, Url, event


class OrganizationMemberUpdated(Payload):
    """A member of an organization was added, changed role or removed."""

    organization_id: Id
    user_id: Id
    status: Literal["invited", "active", "removed"] | None = None
    role: Name | None = Field(default=None, description="the member's role now, e.g. owner, admin, member")
    updated_at: Timestamp | None = None


class OrganizationAnnouncement(Payload):
    """An organization posted an announcement to its members or followers."""

    organization_id: Id
    announcement_id: Id
    title: Text | None = None
    preview: Text | None = None
    url: Url | None = None
    author_id: Id | None = None
    created_at: Timestamp | None = None


EVENTS = (
    event(
        "organization.member.updated",
        OrganizationMemberUpdated,
        ordering=("organizationId", "userId"),
    ),
    event("organization.announcement", OrganizationAnnouncement, ordering=("organizationId",)),
)
