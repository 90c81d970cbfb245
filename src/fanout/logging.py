"""structlog configuration: JSON in production, console locally, secrets and payloads redacted."""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values never reach a log line.
REDACTED_KEYS = frozenset(
    {"token", "payload", "body", "authorization", "jwt", "secret", "password", "url", "frame", "message_body"}
)


def short_id(value: str) -> str:
    """A stable 8-character digest of a connection id, enough to correlate log lines."""
    return hashlib.blake2s(value.encode(), digest_size=4).hexdigest()


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secrets and payloads; shorten connection ids."""
    for key in list(event):
        lowered = key.lower()
        if lowered in REDACTED_KEYS:
            event[key] = "[redacted]"
        elif lowered in ("connection_id", "connectionid"):
            event[key] = short_id(str(event[key]))
    return event


def configure(level: str = "INFO", fmt: str = "console") -> None:
    """Configure structlog once per process."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
