"""The event catalog: every event type the product sends, its payload model per version, its policy.

One module per domain declares its payload models and entries; this module collects them into one
registry. A type can have several versions at once (docs/protocol.md section 11: an incompatible change
is a new version that runs beside the old one). Types outside the catalog in a known domain are still
accepted, without a payload check, with the prefix policies.
"""

from __future__ import annotations

from fanout.catalog import activity, chat, event, follow, notification, organization, system, user
from fanout.catalog._base import TOPIC_PATTERN, EventSpec, Payload
from fanout.catalog.activity import ActivityFeedUpdated
from fanout.catalog.chat import (
    ChatConversationUpdated,
    ChatMessage,
    ChatRead,
    ChatReceiptUpdated,
    ChatTypingStarted,
    ChatTypingStopped,
)
from fanout.catalog.event import (
    AttendeePreview,
    EventAttendanceUpdated,
    EventRsvpUpdated,
    EventSavedUpdated,
    EventUpcomingUpdated,
)
from fanout.catalog.follow import FollowRequestCreated, FollowRequestUpdated
from fanout.catalog.notification import NotificationNew, NotificationRead, NotificationUnreadUpdated
from fanout.catalog.organization import OrganizationAnnouncement, OrganizationMemberUpdated
from fanout.catalog.policy import (
    DEFAULT_POLICY,
    DOMAINS,
    PRIORITIES,
    Policy,
    Priority,
    domain_of,
    prefix_policy,
)
from fanout.catalog.system import (
    ACCESS_REVOKED,
    SystemAccessRevoked,
    SystemBroadcast,
    SystemHeartbeat,
    SystemNotice,
    SystemReconnect,
    SystemReplay,
)
from fanout.catalog.user import UserPresenceUpdated

#: Every entry, every version, in declaration order.
SPECS: tuple[EventSpec, ...] = (
    *notification.EVENTS,
    *chat.EVENTS,
    *follow.EVENTS,
    *event.EVENTS,
    *organization.EVENTS,
    *activity.EVENTS,
    *user.EVENTS,
    *system.EVENTS,
)

#: The metric label for a type outside the catalog, so labels stay bounded.
OTHER = "other"


def _index(specs: tuple[EventSpec, ...]) -> dict[str, dict[int, EventSpec]]:
    """Versions by type; refuses a catalog that contradicts itself (checked once, at import)."""
    by_type: dict[str, dict[int, EventSpec]] = {}
    for spec in specs:
        if spec.domain not in DOMAINS:
            raise ValueError(f"{spec.type}: unknown domain")
        if spec.version < 1 or spec.version in by_type.get(spec.type, {}):
            raise ValueError(f"{spec.key}: versions start at 1 and appear once")
        required = {f.alias or name for name, f in spec.model.model_fields.items() if f.is_required()}
        if not set(spec.policy.ordering) <= required:
            raise ValueError(f"{spec.key}: ordering fields must be required payload fields")
        by_type.setdefault(spec.type, {})[spec.version] = spec
    return by_type


_BY_TYPE = _index(SPECS)
_BY_MODEL: dict[type[Payload], EventSpec] = {spec.model: spec for spec in SPECS}

#: The newest version of each catalogued type: what typed publishers send.
CURRENT: dict[str, EventSpec] = {t: versions[max(versions)] for t, versions in _BY_TYPE.items()}
#: Catalogued types: the ones metrics label by name.
KNOWN_TYPES: frozenset[str] = frozenset(CURRENT)


def lookup(event_type: str, version: int = 1) -> EventSpec | None:
    """The entry for one version of a type; None when the type or that version is not catalogued."""
    versions = _BY_TYPE.get(event_type)
    return versions.get(version) if versions is not None else None


def versions_of(event_type: str) -> tuple[int, ...]:
    """The catalogued versions of a type, oldest first (empty when uncatalogued)."""
    return tuple(sorted(_BY_TYPE.get(event_type, {})))


def spec_of(model: type[Payload]) -> EventSpec:
    """The entry of a payload class (or of the catalog class it extends); ``TypeError`` otherwise."""
    for cls in model.__mro__:
        found = _BY_MODEL.get(cls)
        if found is not None:
            return found
    raise TypeError(f"{model.__name__} is not a payload of the event catalog")


def policy_for(event_type: str) -> Policy:
    """The delivery policy of an event type: the catalog's, else the longest configured prefix's."""
    spec = CURRENT.get(event_type)
    return spec.policy if spec is not None else prefix_policy(event_type)


def metric_label(event_type: str) -> str:
    """The ``event_type`` label for metrics: the type itself when catalogued, else ``other``."""
    return event_type if event_type in KNOWN_TYPES else OTHER


__all__ = [
    "ACCESS_REVOKED",
    "CURRENT",
    "DEFAULT_POLICY",
    "DOMAINS",
    "KNOWN_TYPES",
    "OTHER",
    "PRIORITIES",
    "SPECS",
    "TOPIC_PATTERN",
    "ActivityFeedUpdated",
    "AttendeePreview",
    "ChatConversationUpdated",
    "ChatMessage",
    "ChatRead",
    "ChatReceiptUpdated",
    "ChatTypingStarted",
    "ChatTypingStopped",
    "EventAttendanceUpdated",
    "EventRsvpUpdated",
    "EventSavedUpdated",
    "EventSpec",
    "EventUpcomingUpdated",
    "FollowRequestCreated",
    "FollowRequestUpdated",
    "NotificationNew",
    "NotificationRead",
    "NotificationUnreadUpdated",
    "OrganizationAnnouncement",
    "OrganizationMemberUpdated",
    "Payload",
    "Policy",
    "Priority",
    "SystemAccessRevoked",
    "SystemBroadcast",
    "SystemHeartbeat",
    "SystemNotice",
    "SystemReconnect",
    "SystemReplay",
    "UserPresenceUpdated",
    "domain_of",
    "lookup",
    "metric_label",
    "policy_for",
    "spec_of",
    "versions_of",
]
