"""What every action gets: the frame, from a verified connection, and the services it may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fanout.config import Settings
from fanout.history import History
from fanout.lifecycle.access import AccessPolicy
from fanout.lifecycle.replays import ReplayQueue
from fanout.lifecycle.replies import Response
from fanout.store import ConnectionStore


@dataclass(frozen=True, slots=True)
class Frame:
    """One client frame on a connection whose record exists; ``user_id`` comes from that record."""

    connection_id: str
    user_id: str
    action: str
    body: dict[str, Any]
    reply_to: str | None  # the frame's own "id", echoed as "replyTo"


@dataclass(frozen=True, slots=True)
class Services:
    """The lifecycle's dependencies, built once per process (Lambda container or emulator)."""

    store: ConnectionStore
    settings: Settings
    access: AccessPolicy
    history: History
    replays: ReplayQueue


Action = Callable[[Services, Frame], Awaitable[Response]]
