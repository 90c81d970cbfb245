"""What happens to a message: decided by pure functions from its record, its policy, the fan-out's result
and the clock. ``worker/settle.py`` carries the decision out; nothing here touches SQS.

Every message ends in one of: delete (done, expired, switched off, or after writing what follows), a
remainder put back for the connections that still failed, a dead letter with its reason, or a release
to be received again (a dependency failed, or the worker is stopping).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from fanout import queues
from fanout.catalog import Policy
from fanout.worker.received import Received
from fanout.worker.result import FanoutResult

OUTAGE_DELAY_S = 5  # re-enqueue delay while the management API refuses every connection (the default)
MAX_DELAY_S = 900  # SQS's longest DelaySeconds
MAX_RELEASE_S = 60
CLOCK_SKEW_S = 0.25  # a check this little ahead of the worker's clock is due (the lifecycle's may run ahead)


@dataclass(frozen=True, slots=True)
class Remainder:
    """Put the event back for ``ids`` only, as round ``round``, visible after ``delay_s``."""

    ids: tuple[str, ...]
    users: frozenset[str]  # their users: the remainder's target narrows to them
    round: int
    delay_s: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Copy the message to the DLQ with ``reason`` (and the connections it concerns)."""

    reason: str
    detail: str
    ids: tuple[str, ...] = ()
    users: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Shard:
    """One part of a large audience, put back on the queue for any process of the pool: either the
    target's connections in buckets ``[lo, hi)`` (the store's hash of the connection id), or a slice
    of its user list."""

    range: tuple[int, int] | None = None
    users: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fate:
    """The decision for one received message."""

    outcome: str  # the fanout_events_total outcome
    delete: bool = True  # delete it once the remainder and dead letters below are written
    release_after_s: int | None = None  # instead of deleting: visible again after this long
    remainder: Remainder | None = None
    dead_letters: tuple[DeadLetter, ...] = field(default=())
    outage: bool = False  # every post found the management API unreachable
    shards: tuple[Shard, ...] = field(default=())  # write these, then delete the message


@dataclass(frozen=True, slots=True)
class Deliver:
    """Fan the event out: retries may go on for ``budget_s``; no post may start after ``expires_at``."""

    budget_s: float
    expires_at: float  # epoch seconds


def expires_at(msg: Received, policy: Policy) -> float:
    """When the event stops being worth delivering: ``meta.expiresAt``, else ``sentAt`` + the type's age."""
    assert msg.body is not None
    meta = msg.body.meta.expires_at
    return meta.timestamp() if meta is not None else msg.body.sent_at_epoch + policy.max_age_s


def before(
    msg: Received, policy: Policy, now: float, visibility_s: float, *, enabled: bool
) -> Fate | Deliver:
    """Before any post: dead-letter what is invalid, drop what is switched off (``enabled`` is the
    type's flag, ``fanout flags``) or has expired, otherwise deliver."""
    if msg.invalid is not None:
        return Fate("invalid", dead_letters=(DeadLetter(msg.invalid.reason, msg.invalid.detail),))
    if not enabled:
        return Fate("disabled")
    expiry = expires_at(msg, policy)
    if now > expiry:
        return Fate("expired")
    return Deliver(min(visibility_s * 4, max(1.0, expiry - now)), expiry)


def due_in(msg: Received, now: float, outage_delay_s: int = OUTAGE_DELAY_S) -> int:
    """Whole seconds until a message fanout delayed on purpose is due, 0 once it is. A FIFO queue takes no
    ``DelaySeconds``, so such a message arrives at once and is held until then: a scheduled typing stop or
    presence check until its ``sentAt``, a remainder until its round's delay has passed since it was sent:
    2^round s, and at least ``outage_delay_s``, since an outage's remainder keeps its round (on a standard
    queue it waits ``outage_delay_s`` whatever the round) and nothing received says which it is. Without
    the hold an outage's remainder came back every second or so until the event expired. A time more than
    ``MAX_DELAY_S`` ahead, which fanout never writes, counts as due."""
    routing = msg.routing
    if routing.check is not None:
        assert msg.body is not None
        ahead = msg.body.sent_at_epoch - now
    elif routing.only is not None and msg.sent_at is not None and queues.is_fifo(msg.queue_url):
        delay = max(outage_delay_s, min(MAX_DELAY_S, 2**routing.round))
        ahead = msg.sent_at + delay - now
    else:
        return 0
    due = ahead <= CLOCK_SKEW_S or ahead > MAX_DELAY_S
    return 0 if due else math.ceil(ahead)


def split(msg: Received, parts: int, users_per_shard: int, buckets: int = 1024) -> Fate | None:
    """Split a large audience into shards: ``parts`` bucket ranges when the store counted more than a
    shard's size (a broadcast or a topic audience), else slices of a user list longer than
    ``users_per_shard``. None: deliver it whole.

    A worker-written part (a remainder or a shard) is never split again, and a user list is sliced only
    when no topic, broadcast or single connection (each slice would carry them all) could select one
    connection twice across slices.
    """
    assert msg.body is not None
    if msg.routing.is_part:
        return None
    if parts > 1:
        parts = min(parts, buckets)
        edges = [k * buckets // parts for k in range(parts + 1)]
        return Fate("sharded", shards=tuple(Shard(range=pair) for pair in itertools.pairwise(edges)))
    target = msg.body.target
    users = target.user_ids
    if target.broadcast or target.topics or target.connection_ids or len(users) <= users_per_shard:
        return None
    slices = (tuple(users[i : i + users_per_shard]) for i in range(0, len(users), users_per_shard))
    return Fate("sharded", shards=tuple(Shard(users=part) for part in slices))


def after(msg: Received, policy: Policy, result: FanoutResult, outage_delay_s: int = OUTAGE_DELAY_S) -> Fate:
    """After the fan-out: delete, with a remainder for what still failed or dead letters for what cannot
    (in an outage, the remainder is visible after ``outage_delay_s``)."""
    outcome = result.event_outcome()
    if result.too_large:
        return Fate(outcome, dead_letters=(DeadLetter("too_large", "management API answered 413"),))
    letters: list[DeadLetter] = []
    if result.refused:
        refused = tuple(result.refused)
        letters.append(
            DeadLetter("forbidden", "management API answered 403", refused, result.users_of(refused))
        )
    remainder = None
    failed = tuple(result.failed)
    if failed and result.endpoint_down():
        # An outage, not this event's fault: keep the round; the event's own expiry bounds the tries.
        remainder = Remainder(failed, result.users_of(failed), msg.round, outage_delay_s)
    elif failed and msg.round < policy.rounds:
        nxt = msg.round + 1
        remainder = Remainder(failed, result.users_of(failed), nxt, min(MAX_DELAY_S, 2**nxt))
    elif failed:
        letters.append(
            DeadLetter("retries_exhausted", f"{len(failed)} connections", failed, result.users_of(failed))
        )
    return Fate(
        outcome,
        remainder=remainder,
        dead_letters=tuple(letters),
        outage=bool(failed) and result.endpoint_down(),
    )


def replayed(
    msg: Received, result: FanoutResult, *, max_receives: int, outage_delay_s: int = OUTAGE_DELAY_S
) -> Fate:
    """After a replay (a resume's missed events, posted in order to one connection): done, whatever
    came of it (the client resumes again when it reconnects), except in an outage of the management
    API, when it is tried again after a pause within its short expiry. The same message comes back each
    time, so on its last receive before SQS's own redrive it is dead-lettered here, with a reason."""
    if result.failed and result.endpoint_down():
        if msg.receive_count >= max_receives - 1:
            letter = DeadLetter("retries_exhausted", "management API unreachable on every receive")
            return Fate("failed", dead_letters=(letter,), outage=True)
        return Fate("released", delete=False, release_after_s=outage_delay_s, outage=True)
    return Fate(result.event_outcome())


def on_error(msg: Received, error: BaseException, *, stopping: bool, max_receives: int) -> Fate:
    """The fan-out raised (a dependency failed) or was cancelled: release it to be received again.

    On its last receive before SQS's own redrive it is dead-lettered here instead, with the error as
    its reason, so no message reaches the DLQ without one.
    """
    if stopping:
        return Fate("released", delete=False, release_after_s=0)
    if msg.receive_count >= max_receives - 1:
        return Fate("failed", dead_letters=(DeadLetter("handler_error", type(error).__name__),))
    return Fate("released", delete=False, release_after_s=min(MAX_RELEASE_S, 2**msg.receive_count))
