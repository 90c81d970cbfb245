"""fanout: queue-driven fan-out of real-time events to API Gateway WebSocket connections."""

from fanout.config import Settings
from fanout.envelope import ClientEnvelope, QueueBody, Target, parse_body
from fanout.errors import ConfigError, FanoutError, InvalidMessage
from fanout.publish import AsyncPublisher, Publisher, build_event

__all__ = [
    "AsyncPublisher",
    "ClientEnvelope",
    "ConfigError",
    "FanoutError",
    "InvalidMessage",
    "Publisher",
    "QueueBody",
    "Settings",
    "Target",
    "build_event",
    "parse_body",
]
