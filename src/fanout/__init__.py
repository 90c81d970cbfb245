"""fanout: queue-driven fan-out of real-time events to API Gateway WebSocket connections.

The names below load on first use (PEP 562): a process that needs none of the publishers, such as the
``fanout`` command line before it runs a command, does not pay for importing aiobotocore and aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Each public name and the module it comes from.
_HOMES = {
    "Settings": "fanout.config",
    "ClientEnvelope": "fanout.envelope",
    "QueueBody": "fanout.envelope",
    "Target": "fanout.envelope",
    "parse_body": "fanout.envelope",
    "ConfigError": "fanout.errors",
    "FanoutError": "fanout.errors",
    "InvalidMessage": "fanout.errors",
    "PublishBufferFull": "fanout.errors",
    "AsyncBackgroundPublisher": "fanout.publish",
    "AsyncPublisher": "fanout.publish",
    "BackgroundPublisher": "fanout.publish",
    "Publisher": "fanout.publish",
    "build_event": "fanout.publish",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fanout' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
