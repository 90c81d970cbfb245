"""Events the lifecycle publishes itself (typing, presence, receipts): onto the events queue, like any
domain service's, so the worker delivers them with its lanes, retries and metrics.

A message may wait (``DelaySeconds``: a scheduled typing stop, a presence check) and carry a check the
worker confirms before posting (``fanout-check``, docs/protocol.md section 6). The queue's client is
opened on the first send; the deployed Lambda has ``sqs:SendMessage`` on the events queue for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fanout import attributes
from fanout.envelope import QueueBody
from fanout.lifecycle.context import Services
from fanout.logging import get_logger

log = get_logger("fanout.lifecycle")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event for the queue, visible after ``delay_s``, posted only if ``check`` still holds."""

    body: QueueBody
    delay_s: int = 0
    check: str | None = None

    def entry(self) -> dict[str, Any]:
        """The ``SendMessageBatch`` entry (without its ``Id``)."""
        entry: dict[str, Any] = {"MessageBody": self.body.to_json()}
        if self.delay_s:
            entry["DelaySeconds"] = self.delay_s
        if self.check is not None:
            entry["MessageAttributes"] = attributes.check(self.check)
        return entry


async def emit(services: Services, *messages: Outgoing) -> bool:
    """Send up to ten events in one call; False (and a warning) when the queue did not take them all."""
    try:
        await services.events.send_batch([m.entry() for m in messages])
    except Exception as exc:  # the caller answers the client; the connection stands
        types = sorted({m.body.type for m in messages})
        log.warning("publish_failed", event_types=types, error=type(exc).__name__)
        return False
    return True
