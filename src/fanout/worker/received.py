"""A received SQS message, parsed once where it is received: the typed record every later step reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fanout import attributes
from fanout.envelope import QueueBody, parse_body
from fanout.errors import InvalidMessage


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the worker needs it; ``invalid`` is set instead of ``body`` when it can never be
    delivered, and says why."""

    receipt: str
    message_id: str
    raw: str  # the body as received, kept for the dead-letter queue
    body: QueueBody | None
    invalid: InvalidMessage | None
    routing: attributes.Routing
    sent_at: float | None  # SQS SentTimestamp, seconds since the epoch
    receive_count: int
    queue_url: str = ""  # the queue it came from: deletes, releases and remainders go back there

    @property
    def round(self) -> int:
        return self.routing.round

    @property
    def only(self) -> tuple[str, ...] | None:
        return self.routing.only


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse(message: dict[str, Any], queue_url: str = "") -> Received:
    """Parse a ``ReceiveMessage`` entry. Never raises: anything wrong with the body or the worker-owned
    attributes ends up in ``invalid``."""
    system = message.get("Attributes") or {}
    raw = message.get("Body")
    raw = raw if isinstance(raw, str) else ""
    sent = _int(system.get("SentTimestamp"), 0)
    body: QueueBody | None = None
    invalid: InvalidMessage | None = None
    routing = attributes.Routing()
    try:
        routing = attributes.read(message.get("MessageAttributes"))
        parsed = parse_body(raw)
        attributes.check_fits(routing, parsed.type)
        body = parsed
    except InvalidMessage as exc:
        invalid = exc
    except Exception as exc:  # a parser bug must still end in a reasoned outcome, not a release loop
        invalid = InvalidMessage("unparseable", type(exc).__name__)
    return Received(
        receipt=message["ReceiptHandle"],
        message_id=str(message.get("MessageId", "")),
        raw=raw,
        body=body,
        invalid=invalid,
        routing=routing,
        sent_at=sent / 1000 if sent else None,
        receive_count=_int(system.get("ApproximateReceiveCount"), 1),
        queue_url=queue_url,
    )
