"""The events typing, presence and receipts publish: catalog payloads to a list of users."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from fanout.catalog import Payload, UserPresenceUpdated, spec_of
from fanout.envelope import ORDERING_KEY_PATTERN, QueueBody, validate
from fanout.live.presence import iso

_ORDERING_KEY = re.compile(ORDERING_KEY_PATTERN)


def event(
    payload: Payload, user_ids: Iterable[str], *, sent_at: datetime | None = None, event_id: str | None = None
) -> QueueBody:
    """A catalogued event for ``user_ids``: type, payload version and ordering key from the catalog.
    ``sent_at`` (default now) is when it takes effect: a scheduled stop carries the time it is due."""
    spec = spec_of(type(payload))
    wire = payload.wire()
    meta: dict[str, Any] = {"payloadVersion": spec.version}
    # An id may hold what a key may not (a space, non-ASCII, 256 characters): then the event goes without
    # one, unordered on a FIFO queue, rather than not at all.
    if (key := spec.ordering_key(wire)) is not None and _ORDERING_KEY.fullmatch(key):
        meta["orderingKey"] = key
    doc = {
        "v": 1,
        "id": event_id or f"evt_{ULID()}",
        "type": spec.type,
        "payload": wire,
        "sentAt": iso(sent_at or datetime.now(UTC)),
        "target": {"userIds": list(dict.fromkeys(user_ids))},
        "meta": meta,
    }
    return validate(doc)


def offline(
    user_id: str,
    last_seen: datetime,
    audience: Iterable[str],
    event_id: str | None = None,
    sent_at: datetime | None = None,
) -> QueueBody:
    """``user.presence.updated`` offline with ``lastSeenAt``; the user themself when nobody else may see it
    (they have no live connection, so it reaches no one). ``sent_at``: when a scheduled check is due."""
    payload = UserPresenceUpdated(user_id=user_id, status="offline", last_seen_at=iso(last_seen))
    return event(payload, list(audience) or [user_id], event_id=event_id, sent_at=sent_at)
