"""fanout: queue-driven fan-out of real-time events to API Gateway WebSocket connections."""

from fanout.config import Settings
from fanout.envelope import ClientEnvelope, QueueBody, Target, parse_body
from fanout.errors import ConfigError, FanoutError, InvalidMessage, PublishBufferFull
from fanout.publish import (
    AsyncBackgroundPublisher,
    AsyncPublisher,
    BackgroundPublisher,
    Publisher,
    build_event,
)

__all__ = [
    "AsyncBackgroundPublisher",
    "AsyncPublisher",
    "BackgroundPublisher",
    "ClientEnvelope",
    "ConfigError",
    "FanoutError",
    "InvalidMessage",
    "PublishBufferFull",
    "Publisher",
    "QueueBody",
    "Settings",
    "Target",
    "build_event",
    "parse_body",
]
