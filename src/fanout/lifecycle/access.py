"""Who may subscribe to what. Topics are ``kind:id``; the policy decides per kind.

By default a connection may subscribe to its own user's topic (``user:<own id>``) and to public kinds
(``event:<id>``); every other kind (``organization``, ``conversation``...) is refused unless the
product's own check allows it: a callable named by ``FANOUT_TOPIC_POLICY`` (``package.module:function``),
called as ``function(user_id, topic)`` and returning a bool (or an awaitable of one). It is called only
for kinds the default does not decide, so the product gates exactly the kinds it owns.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fanout import hooks
from fanout.catalog import TOPIC_PATTERN

#: Kinds anyone signed in may follow: an event's public counters, for example.
PUBLIC_KINDS = frozenset({"event"})
_TOPIC = re.compile(TOPIC_PATTERN)

TopicCheck = Callable[[str, str], bool | Awaitable[bool]]


def load_check(dotted: str | None) -> TopicCheck | None:
    """The callable named ``package.module:function``; ``ConfigError`` when it cannot be loaded."""
    return hooks.load(dotted, "FANOUT_TOPIC_POLICY")


def valid_topic(topic: object) -> bool:
    """A topic name of the documented pattern, ``kind:id``."""
    return isinstance(topic, str) and _TOPIC.fullmatch(topic) is not None


class AccessPolicy:
    """Decides whether ``user_id`` may follow ``topic``."""

    def __init__(self, check: TopicCheck | None = None) -> None:
        self._check = check

    def gated(self, topic: str) -> bool:
        """Whether the product's check decides ``topic`` (its answer can change: a revocation)."""
        kind = topic.partition(":")[0]
        return self._check is not None and kind != "user" and kind not in PUBLIC_KINDS

    async def allows(self, user_id: str, topic: str) -> bool:
        kind, _, ident = topic.partition(":")
        if kind == "user":
            return ident == user_id
        if kind in PUBLIC_KINDS:
            return True
        if self._check is None:
            return False
        try:
            answer = await hooks.call(self._check, user_id, topic)
        except Exception:  # a failing product check refuses; it never opens access
            return False
        return answer is True
