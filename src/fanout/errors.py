"""The error tree: every error fanout raises on purpose is a ``FanoutError``."""

from __future__ import annotations


class FanoutError(Exception):
    """Base of every error fanout raises on purpose."""


class ConfigError(FanoutError, ValueError):
    """Settings are missing or contradict each other; the process cannot start."""


class InvalidMessage(FanoutError, ValueError):
    """A queue body that can never be delivered; it goes to the dead-letter queue with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AuthError(FanoutError, PermissionError):
    """A WebSocket client presented a missing, malformed or expired token."""


class PublishBufferFull(FanoutError):
    """A background publisher's buffer stayed full for ``block_ms``: the event was not accepted.

    SQS is slower than the publishing rate, or unreachable. The caller decides: fail the request, retry
    later, or write the event to the outbox instead. ``fanout_publisher_failed_total{reason="buffer_full"}``
    counts these."""


class PublisherClosed(FanoutError, RuntimeError):
    """``publish`` was called on a background publisher after ``close()``."""


class WorkerFailed(FanoutError, RuntimeError):
    """A task the worker cannot do without (a poller, the visibility heartbeat, the probe) ended on an
    error: the worker stops, releasing what it holds, and exits non-zero so it is started again."""
