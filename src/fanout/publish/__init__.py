"""Publishing events from a domain service.

- ``Publisher`` / ``AsyncPublisher`` (``direct``): one SQS (or SNS) send per event, in the caller's time.
- ``BackgroundPublisher`` / ``AsyncBackgroundPublisher``: ``publish`` buffers and returns; sender threads
  or tasks send batches of up to ten (``background``, ``abackground``).
- The transactional outbox, for events that must leave only if the domain write commits: ``fanout.outbox``.
"""

from fanout.publish.abackground import AsyncBackgroundPublisher
from fanout.publish.background import BackgroundPublisher
from fanout.publish.direct import (
    AsyncPublisher,
    Audience,
    Publisher,
    Via,
    build_event,
    catalog_event,
    new_event_id,
    revocation,
)

__all__ = [
    "AsyncBackgroundPublisher",
    "AsyncPublisher",
    "Audience",
    "BackgroundPublisher",
    "Publisher",
    "Via",
    "build_event",
    "catalog_event",
    "new_event_id",
    "revocation",
]
