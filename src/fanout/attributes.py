"""The message attributes the worker reads and writes: one home for the worker, DLQ tools and publisher.

A publisher sets none of them. The worker writes ``fanout-round`` and ``fanout-connections`` on the
remainders it puts back on its own queue, and ``fanout-reason``/``fanout-detail`` (plus the connections
that failed) on what it dead-letters. Because anyone who can send to the queue can also set them, they are
validated on receipt: a value the worker would not have written makes the message invalid
(``bad_attribute``), and a ``fanout-connections`` list only ever narrows the body's own target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fanout.errors import InvalidMessage

REASON = "fanout-reason"  # why a message is in the DLQ
DETAIL = "fanout-detail"  # a human-readable detail of the reason, at most DETAIL_CHARS
ROUND = "fanout-round"  # remainder round number
CONNECTIONS = "fanout-connections"  # JSON list: deliver to these connection ids only
SHARD = "fanout-shard"  # JSON [lo, hi]: deliver to the target's connections in buckets [lo, hi) only
CHECK = "fanout-check"  # deliver only if still true: "presence" (went offline) or "typing:<token>"
SHARD_BUCKETS = 1024  # the store's BUCKETS
REPLAY = "fanout-replay"  # JSON list of event ids: post these kept events, in order, to the one connection

#: SQS's limit for one message, counting the body and every attribute's name, type and value.
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_ROUND = 100
MAX_IDS = 50_000
MAX_REPLAY = 5_000  # event ids in one replay (FANOUT_HISTORY_MAX_REPLAY is at most this)
EVENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
DETAIL_CHARS = 512
#: API Gateway connection ids are short base64-like strings (``L0SM9cOFvHcCIhw=``).
CONNECTION_ID = re.compile(r"[A-Za-z0-9_=+/.:-]{1,128}")
#: A check, and the one event type each applies to (docs/protocol.md section 6).
_CHECK = re.compile(r"presence|typing:[0-9A-HJKMNP-TV-Z]{26}")
CHECK_TYPES = {"presence": "user.presence.updated", "typing": "chat.typing.stopped"}
#: What SQS refuses in a body or a String attribute (SendMessage: tab, LF, CR and #x20-#xFFFD beside
#: the surrogates, and the supplementary planes are allowed).
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Attrs = dict[str, dict[str, str]]


def string(value: str) -> dict[str, str]:
    """An SQS String attribute value."""
    return {"DataType": "String", "StringValue": value}


def number(value: int) -> dict[str, str]:
    """An SQS Number attribute value."""
    return {"DataType": "Number", "StringValue": str(value)}


@dataclass(frozen=True, slots=True)
class Routing:
    """What the worker-owned attributes of a received message say: its round, and whom it is still for."""

    round: int = 0
    only: tuple[str, ...] | None = None  # a remainder: these connections, within the body's target
    shard: tuple[int, int] | None = None  # a shard: the target's connections in buckets [lo, hi)
    replay: tuple[str, ...] | None = None  # a replay: these kept events, in order, to the body's connection
    check: str | None = None  # confirm before posting: "presence" or "typing:<token>"

    @property
    def is_remainder(self) -> bool:
        return self.only is not None

    @property
    def is_part(self) -> bool:
        """Written by fanout itself: a part of a larger message (a remainder or a shard), a replay of kept
        events, or a check delayed on purpose. Never split again; queue lag is not measured for any."""
        return (
            self.only is not None
            or self.shard is not None
            or self.replay is not None
            or self.check is not None
        )

    @property
    def is_kept(self) -> bool:
        """Carries an event the history has already (a remainder, a shard, a replay): not kept again."""
        return self.only is not None or self.shard is not None or self.replay is not None


#: The attributes ``read`` looks at, and the routing of a message that has none of them.
_READ = frozenset({ROUND, SHARD, REPLAY, CHECK, CONNECTIONS})
_PLAIN = Routing()


def _value(attrs: Mapping[str, Any], name: str, data_type: str) -> str | None:
    entry = attrs.get(name)
    if entry is None:
        return None
    if not isinstance(entry, Mapping) or not str(entry.get("DataType", "")).startswith(data_type):
        raise InvalidMessage("bad_attribute", f"{name} is not a {data_type} attribute")
    value = entry.get("StringValue")
    if not isinstance(value, str):
        raise InvalidMessage("bad_attribute", f"{name} has no string value")
    return value


def read(attrs: Mapping[str, Any] | None) -> Routing:
    """The routing of a received message; ``InvalidMessage("bad_attribute")`` for a value the worker
    would never write (a wrong type, a round out of range, a connection list that is not a list of ids)."""
    if not attrs or _READ.isdisjoint(attrs):  # a publisher's message: the common case, one set test
        return _PLAIN
    round_raw = _value(attrs, ROUND, "Number")
    round_ = 0
    if round_raw is not None:
        if not (round_raw.isascii() and round_raw.isdigit() and len(round_raw) <= 3):
            raise InvalidMessage("bad_attribute", f"{ROUND} is not a whole number")
        round_ = int(round_raw)
        if round_ > MAX_ROUND:
            raise InvalidMessage("bad_attribute", f"{ROUND} over {MAX_ROUND}")
    shard = _shard(_value(attrs, SHARD, "String"))
    replay = _ids(_value(attrs, REPLAY, "String"), REPLAY, MAX_REPLAY, EVENT_ID, "an event id")
    check = _value(attrs, CHECK, "String")
    if check is not None and not _CHECK.fullmatch(check):
        raise InvalidMessage("bad_attribute", f"{CHECK} is not presence or typing:<token>")
    if check is not None and replay is not None:
        raise InvalidMessage("bad_attribute", f"{CHECK} on a replay")
    only = _ids(_value(attrs, CONNECTIONS, "String"), CONNECTIONS, MAX_IDS, CONNECTION_ID, "a connection id")
    return Routing(round_, only, shard, replay, check)


def check_fits(routing: Routing, event_type: str) -> None:
    """A check applies to one event type; ``InvalidMessage("bad_attribute")`` on any other."""
    if routing.check is not None and CHECK_TYPES[routing.check.partition(":")[0]] != event_type:
        raise InvalidMessage("bad_attribute", f"{CHECK} does not apply to {event_type}")


def _ids(
    raw: str | None, name: str, most: int, pattern: re.Pattern[str], what: str
) -> tuple[str, ...] | None:
    """A JSON list of 1 to ``most`` ids of ``pattern``, repeats dropped; None when the attribute is absent."""
    if raw is None:
        return None
    try:
        ids = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidMessage("bad_attribute", f"{name} is not JSON") from None
    if not isinstance(ids, list) or not 0 < len(ids) <= most:
        raise InvalidMessage("bad_attribute", f"{name} is not a list of 1 to {most} ids")
    if not all(isinstance(i, str) and pattern.fullmatch(i) for i in ids):
        raise InvalidMessage("bad_attribute", f"{name} holds a value that is not {what}")
    return tuple(dict.fromkeys(ids))


def _shard(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    try:
        bounds = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidMessage("bad_attribute", f"{SHARD} is not JSON") from None
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(type(b) is int for b in bounds)):
        raise InvalidMessage("bad_attribute", f"{SHARD} is not a pair of bucket numbers")
    lo, hi = bounds
    if not 0 <= lo < hi <= SHARD_BUCKETS:
        raise InvalidMessage("bad_attribute", f"{SHARD} is not a range of buckets within 0-{SHARD_BUCKETS}")
    return lo, hi


def reason_of(attrs: Mapping[str, Any] | None) -> tuple[str, str]:
    """(reason, detail) of a dead-lettered message; SQS's own redrive sets neither."""
    attrs = attrs or {}
    reason = attrs.get(REASON, {}).get("StringValue") if isinstance(attrs.get(REASON), Mapping) else None
    detail = attrs.get(DETAIL, {}).get("StringValue") if isinstance(attrs.get(DETAIL), Mapping) else None
    return (reason if isinstance(reason, str) else "receive_count_exceeded"), (
        detail if isinstance(detail, str) else ""
    )


def remainder(round_: int, ids: Sequence[str]) -> Attrs:
    """The attributes of a remainder message."""
    return {ROUND: number(round_), CONNECTIONS: string(json.dumps(list(ids), separators=(",", ":")))}


def shard(round_: int, lo: int, hi: int) -> Attrs:
    """The attributes of a shard message: its round and its range of buckets."""
    return {ROUND: number(round_), SHARD: string(json.dumps([lo, hi], separators=(",", ":")))}


def replay(event_ids: Sequence[str]) -> Attrs:
    """The attribute of a replay message (written by the lifecycle's ``resume``)."""
    return {REPLAY: string(json.dumps(list(event_ids), separators=(",", ":")))}


def check(value: str) -> Attrs:
    """The attributes of a check message: ``presence`` or ``typing:<token>``."""
    return {CHECK: string(value)}


def sqs_text(text: str) -> str:
    """``text`` with each character SQS refuses in a message (control characters, U+FFFE, U+FFFF, lone
    surrogates) written as a ``\\uXXXX`` escape: a detail may name a key of a hostile body."""
    return _NOT_SQS_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dead_letter(reason: str, detail: str, ids: Sequence[str] = ()) -> Attrs:
    """The attributes of a dead-lettered message."""
    attrs = {REASON: string(reason), DETAIL: string(sqs_text(detail)[:DETAIL_CHARS] or reason)}
    if ids:
        attrs[CONNECTIONS] = string(json.dumps(list(ids), separators=(",", ":")))
    return attrs


def size(body: str, attrs: Mapping[str, Mapping[str, str]]) -> int:
    """The bytes SQS counts against ``MAX_MESSAGE_BYTES``: the body and each attribute's parts."""
    total = len(body.encode())
    for name, value in attrs.items():
        total += len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
    return total


def chunks(ids: Sequence[str], room: int) -> list[list[str]]:
    """Split ``ids`` into lists whose JSON fits in ``room`` bytes (and ``MAX_IDS``) each; none is lost."""
    out: list[list[str]] = []
    current: list[str] = []
    used = 2  # the brackets
    for cid in ids:
        cost = len(cid.encode()) + 3  # quotes and comma
        if current and (used + cost > room or len(current) >= MAX_IDS):
            out.append(current)
            current, used = [], 2
        current.append(cid)
        used += cost
    if current:
        out.append(current)
    return out
