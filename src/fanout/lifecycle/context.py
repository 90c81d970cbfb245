"""What every action gets: the frame, from a verified connection, and the services it may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fanout.config import Settings
from fanout.inbound import InboundQueue
from fanout.lifecycle.access import AccessPolicy
from fanout.lifecycle.metrics import LifecycleMetrics
from fanout.lifecycle.reconnects import RecentDisconnects
from fanout.lifecycle.replies import Response
from fanout.live import Live
from fanout.queues import LazyQueue
from fanout.store import ConnectionStore
from fanout.tickets import TicketStore
from fanout.tokens import Verifier


@dataclass(frozen=True, slots=True)
class Frame:
    """One client frame on a connection whose record exists; ``user_id`` comes from that record."""

    connection_id: str
    user_id: str
    action: str
    body: dict[str, Any]
    reply_to: str | None  # the frame's own "id", echoed as "replyTo"
    size: int = 0  # the frame's length in bytes (UTF-8)


@dataclass(frozen=True, slots=True)
class Services:
    """The lifecycle's dependencies, built once per process (Lambda container or emulator)."""

    store: ConnectionStore
    settings: Settings
    access: AccessPolicy
    verifier: Verifier
    tickets: TicketStore
    inbound: InboundQueue
    forwarded: frozenset[str]  # actions the domain owns: forwarded to the inbound queue
    metrics: LifecycleMetrics
    disconnects: RecentDisconnects
    events: LazyQueue  # the events queue: what typing, presence and receipts publish (opened on first use)
    live: Live  # typing, presence and receipt state, and the product's resolvers


Action = Callable[[Services, Frame], Awaitable[Response]]
