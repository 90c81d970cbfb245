"""What a resuming client gets: a pure decision from the kept events the history found for it.

Per ordering key the client names its last ``seq``; the key is *covered* when the history still holds
that event or the next one (or nothing was published since), and then every later kept event of the key
is replayed. A key that is not covered is resynced: the client refetches it from GraphQL and takes the
key's latest ``seq`` as its position. The events after its last event id are replayed the same way, and
resynced (``events``) when that id is no longer kept or a kept event may have been the client's without
saying so (a ``wide`` one). More than the replay bound resyncs everything asked. A live counter's key
(a ``bulk`` type, conflated by the worker) replays only its newest kept value and is never resynced for a
gap in its ``seq``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from fanout.catalog import policy_for
from fanout.history import Kept


@dataclass(frozen=True, slots=True)
class Plan:
    """Replay these event ids in this order; resync these keys (with their latest ``seq``) and, when
    ``events``, everything without a key."""

    replay: tuple[str, ...] = ()
    keys: dict[str, int] = field(default_factory=dict)
    events: bool = False

    @property
    def resync(self) -> bool:
        return bool(self.keys) or self.events


def _latest_only(kept: Kept) -> bool:
    return policy_for(kept.type).latest_only


def _covered(position: int, kept: list[Kept], latest: int | None) -> bool:
    if any(k.wide for k in kept):
        return False
    if not kept:  # nothing kept from the position on: covered only if nothing was published since
        return latest is None or latest <= position
    # A live counter's kept values skip what conflation dropped: its newest is all the client needs.
    return kept[0].seq in (position, position + 1) or _latest_only(kept[-1])


def _newest_values(chosen: dict[str, Kept]) -> dict[str, Kept]:
    """``chosen`` less the older values of each live counter's key: only its newest is replayed."""
    newest: dict[str, Kept] = {}
    for k in chosen.values():
        if k.key is not None and k.seq is not None and _latest_only(k):
            best = newest.get(k.key)
            newest[k.key] = k if best is None or k.seq > (best.seq or 0) else best
    keep = set(map(id, newest.values()))
    return {i: k for i, k in chosen.items() if id(k) in keep or k.key not in newest}


def plan(
    positions: dict[str, int],
    by_key: dict[str, list[Kept]],
    latest: dict[str, int],
    since: list[Kept] | None,
    *,
    named_event: bool,
    now: datetime,
    max_replay: int,
) -> Plan:
    """The plan of one resume.

    ``by_key``: per key of ``positions``, its kept events from the position on, in ``seq`` order (at most
    ``max_replay`` + 1). ``latest``: each key's last allocated ``seq``. ``since``: the kept events from the
    client's last event id on (at most ``max_replay`` + 1), or None when that id is no longer kept.
    ``named_event``: the client named a last event id.
    """
    resync: dict[str, int] = {}
    chosen: dict[str, Kept] = {}
    for key, position in positions.items():
        kept = by_key.get(key, [])
        if not _covered(position, kept, latest.get(key)):
            last_kept = max((k.seq for k in kept if k.seq is not None), default=position)
            resync[key] = latest.get(key, last_kept)
            continue
        chosen |= {k.id: k for k in kept if k.seq is not None and k.seq > position}
    events = named_event and (since is None or any(k.wide for k in since))
    for k in since or ():
        if k.wide or k.key in resync:
            continue
        if k.key in positions and k.seq is not None and k.seq <= positions[k.key]:
            continue  # the client has it: its position says so
        chosen.setdefault(k.id, k)
    live = [k for k in _newest_values(chosen).values() if k.until is None or k.until > now]
    cut_short = [*by_key.values(), since or []]  # a list at its query limit may hold more
    if len(live) > max_replay or any(len(v) > max_replay for v in cut_short):
        every = {key: latest.get(key, positions[key]) for key in positions}
        return Plan((), every, named_event)
    return Plan(tuple(k.id for k in in_order(live)), resync, events)


def in_order(kept: list[Kept]) -> list[Kept]:
    """Oldest kept first; the events of one key in ``seq`` order among the places they hold (a later
    ``seq`` may have been kept first when publishers raced)."""
    ordered = sorted(kept, key=lambda k: (k.at, k.id))
    places: defaultdict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(ordered):
        if k.key is not None and k.seq is not None:
            places[k.key].append(i)
    out = list(ordered)
    for spots in places.values():
        for spot, k in zip(spots, sorted((ordered[i] for i in spots), key=lambda k: k.seq or 0), strict=True):
            out[spot] = k
    return out
