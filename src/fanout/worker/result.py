"""What happened to one event's posts: the answers counted, the connections worth another round, the
refusals, and the event's outcome label. The fan-out fills it in (``delivery.py``); the pure fate
functions read it (``fate.after``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fanout.gateway.client import Outcome
from fanout.store import Connection

_UNSUPPORTED = Outcome.UNSUPPORTED_VERSION


@dataclass
class FanoutResult:
    """What happened to one event's posts."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # still failing after retries: worth another round
    refused: list[str] = field(default_factory=list)  # 403: misconfigured endpoint or permissions
    users: dict[str, str] = field(default_factory=dict)  # user id of each failed or refused connection
    refused_endpoints: set[str] = field(default_factory=set)  # endpoints that answered 403
    too_large: bool = False  # 413: no retry fixes the frame
    retries: int = 0
    attempts: Counter[Outcome] = field(default_factory=Counter)  # every post attempt's answer
    reachable: set[str] = field(default_factory=set)  # endpoints that answered a post over HTTP
    unreachable: set[str] = field(default_factory=set)  # endpoints where a post ended refused at the socket
    unposted: int = 0  # of the timeouts, connections not posted at all: the event's deadline came first
    conflated: int = 0  # posts not retried: a newer value of the live counter's key was claimed since
    conflated_unreachable: int = 0  # of those, the ones whose last attempt was refused at the socket

    @property
    def attempted(self) -> int:
        outcomes = self.outcomes  # .get: a missing key would cost a Counter.__missing__ call
        return (
            sum(outcomes.values())
            + self.conflated
            - outcomes.get(Outcome.EXPIRED, 0)
            - outcomes.get(_UNSUPPORTED, 0)
        )

    def users_of(self, connection_ids: tuple[str, ...]) -> frozenset[str]:
        """The users of some failed or refused connections."""
        return frozenset(self.users[c] for c in connection_ids if c in self.users)

    def endpoint_down(self) -> bool:
        """Every post made was refused at the socket: the management API itself is unreachable."""
        posted = self.attempted - self.unposted  # those left at the deadline say nothing of the endpoint
        # A post spared its retries by a newer value (``conflated``) counts by its last attempt's answer.
        unreachable = self.outcomes[Outcome.UNREACHABLE] + self.conflated_unreachable
        return bool(posted) and unreachable == posted

    def fail(self, conn: Connection, refused: bool = False) -> None:
        (self.refused if refused else self.failed).append(conn.connection_id)
        self.users[conn.connection_id] = conn.user_id

    def event_outcome(self) -> str:
        """The ``fanout_events_total`` outcome label."""
        if not self.attempted:
            return "expired" if self.outcomes[Outcome.EXPIRED] else "no_connections"
        if not (self.failed or self.refused or self.too_large):
            # Not one connection took it, and some were spared its retries by a newer value of its key.
            return "conflated" if self.conflated and not self.outcomes[Outcome.OK] else "delivered"
        return "partial" if self.outcomes[Outcome.OK] else "failed"
