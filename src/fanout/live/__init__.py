"""Typing indicators, presence and receipts: the state fanout keeps for them in MongoDB, and the questions
it asks the product (who is in a conversation, who may see a user's presence).

The lifecycle takes the client frames (``chat.typing``, ``chat.ack``, ``presence.query``) and the
connects and disconnects; the worker confirms the outcomes that wait (a scheduled typing stop, a user going
offline) against the same state before it posts them (``worker/checks.py``). docs/protocol.md sections
16 to 18 are the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from fanout import hooks
from fanout.config import Settings
from fanout.live import indicators, presence, receipts
from fanout.live.audience import Participants, PresenceAudience
from fanout.live.indicators import TypingStore
from fanout.live.presence import PresenceStore
from fanout.live.receipts import ReceiptStore


@dataclass(frozen=True, slots=True)
class Live:
    """Everything typing, presence and receipts need, built once per process."""

    participants: Participants
    audience: PresenceAudience
    presence: PresenceStore
    typing: TypingStore
    receipts: ReceiptStore

    @classmethod
    def build(cls, db: AsyncDatabase[dict[str, Any]], settings: Settings) -> Live:
        """Load the product's resolvers (``ConfigError`` for a name that cannot be loaded)."""
        s = settings
        conversations, field = db[s.conversations_collection], s.participants_field
        return cls(
            Participants(
                conversations,
                field,
                hooks.load(s.participants_resolver, "FANOUT_PARTICIPANTS_RESOLVER"),
                s.conversation_id_field,
            ),
            PresenceAudience(
                conversations, field, hooks.load(s.presence_audience, "FANOUT_PRESENCE_AUDIENCE")
            ),
            PresenceStore(db[presence.COLLECTION], db[s.connections_collection]),
            TypingStore(db[indicators.COLLECTION]),
            ReceiptStore(db[receipts.COLLECTION]),
        )


__all__ = ["Live", "Participants", "PresenceAudience", "PresenceStore", "ReceiptStore", "TypingStore"]
