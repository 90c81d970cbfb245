"""The demo's pretend domain service: what the product's API would hold and publish, kept in memory.

It owns the state the page refetches after a resync (the unread count, the thread, the RSVP counter),
changes it the way a mutation would, and publishes each change through ``fanout.publish`` like a domain
service: the tab that made a change is named in ``excludeConnectionIds`` so it gets no echo, while the
user's other tabs and the other participants do. The conversation's participants live in MongoDB's
``conversations`` collection, where fanout's typing, receipts and presence look them up.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fanout.catalog import (
    ChatMessage,
    EventAttendanceUpdated,
    EventRsvpUpdated,
    NotificationNew,
    NotificationRead,
)
from fanout.config import Settings
from fanout.envelope import now_iso
from fanout.publish import AsyncPublisher

USERS = ("alice", "bob")
CONVERSATION = "demo-chat"
EVENT = "demo-event"
TOPIC = f"event:{EVENT}"
#: Check-ins one "simulate" publishes at once: enough to see conflation keep frames few.
CHECK_IN_BURST = 60


@dataclass
class Demo:
    """The demo's data and the publisher its changes go through."""

    settings: Settings
    publisher: AsyncPublisher
    conversations: Any  # the AsyncCollection fanout reads participants from
    participants: list[str] = field(default_factory=lambda: list(USERS))
    unread: dict[str, int] = field(default_factory=dict)
    notifications: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    going: int = 0
    checked_in: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def seed(self, participants: list[str] | None = None) -> dict[str, Any]:
        """Write the demo conversation with its participants (idempotent)."""
        self.participants = list(dict.fromkeys(participants or USERS))
        id_field = self.settings.conversation_id_field
        await self.conversations.update_one(
            {id_field: CONVERSATION},
            {"$set": {self.settings.participants_field: self.participants, "title": "fanout demo"}},
            upsert=True,
        )
        return {"conversationId": CONVERSATION, "participants": self.participants}

    def state(self, user: str) -> dict[str, Any]:
        """What the page loads, and loads again when it is told to resync."""
        return {
            "user": user,
            "unreadCount": self.unread.get(user, 0),
            "notifications": list(self.notifications.get(user, ())),
            "conversationId": CONVERSATION,
            "participants": self.participants,
            "messages": list(self.messages) if user in self.participants else [],
            "eventId": EVENT,
            "goingCount": self.going,
            "checkedInCount": self.checked_in,
        }

    async def notify(self, user: str, title: str) -> list[str]:
        """A new notification: the badge of every tab of ``user`` goes up."""
        count = self.unread[user] = self.unread.get(user, 0) + 1
        nid, created = f"n{next(self._ids)}", now_iso()
        item = {"notificationId": nid, "title": title, "createdAt": created, "unreadCount": count}
        self.notifications.setdefault(user, deque(maxlen=20)).appendleft(item)
        payload = NotificationNew(notification_id=nid, title=title, created_at=created, unread_count=count)
        return [await self.publisher.send_event(payload, user_ids=[user])]

    async def read_all(self, user: str, connection_id: str | None) -> list[str]:
        """Mark everything read: the tab that did it already shows 0; the user's other tabs are told."""
        self.unread[user] = 0
        payload = NotificationRead(all=True, read_at=now_iso(), unread_count=0)
        exclude = [connection_id] if connection_id else []
        return [await self.publisher.send_event(payload, user_ids=[user], exclude_connection_ids=exclude)]

    async def send(
        self, sender: str, text: str, client_id: str | None, connection_id: str | None
    ) -> dict[str, Any]:
        """Store a chat message and publish it to every participant but the tab that sent it."""
        message = {
            "conversationId": CONVERSATION,
            "messageId": f"m{next(self._ids)}",
            "senderId": sender,
            "text": text,
            "createdAt": now_iso(),
            **({"clientMessageId": client_id} if client_id else {}),
        }
        self.messages.append(message)
        payload = ChatMessage(
            conversation_id=CONVERSATION,
            message_id=message["messageId"],
            sender_id=sender,
            text=text,
            created_at=message["createdAt"],
            client_message_id=client_id,
        )
        exclude = [connection_id] if connection_id else []
        message["eventId"] = await self.publisher.send_event(
            payload, user_ids=self.participants, exclude_connection_ids=exclude
        )
        return message

    async def rsvp(self, user: str) -> list[str]:
        """One more person going: every page watching the event redraws its counter."""
        self.going += 1
        payload = EventRsvpUpdated(event_id=EVENT, going_count=self.going, user_id=user, status="going")
        return [await self.publisher.send_event(payload, topics=[TOPIC])]

    async def check_ins(self, burst: int = CHECK_IN_BURST) -> list[str]:
        """A burst of check-ins, one event each: the worker conflates them to a few frames per watcher.
        Sent one after another, so each is newer (by ``sentAt``) than the one before."""
        sent: list[str] = []
        for _ in range(burst):
            self.checked_in += 1
            payload = EventAttendanceUpdated(
                event_id=EVENT, checked_in_count=self.checked_in, going_count=self.going
            )
            sent.append(await self.publisher.send_event(payload, topics=[TOPIC]))
        return sent

    def other(self, user: str) -> str:
        """Someone else in the conversation (the one a simulated message comes from)."""
        return next((p for p in self.participants if p != user), self.participants[0])
