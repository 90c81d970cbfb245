"""``chat.*``: messages, read state, the conversation list, typing indicators and receipts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fanout.catalog._base import Count, Id, Payload, Text, Timestamp, event

_CONVERSATION = ("conversationId",)


class ChatMessage(Payload):
    """A message was sent in a conversation the recipient is part of."""

    conversation_id: Id
    message_id: Id
    sender_id: Id
    text: Text | None = None
    created_at: Timestamp | None = None
    client_message_id: Id | None = Field(
        default=None,
        description="the sender's own id for the message, so its tab can match its optimistic copy",
    )


class ChatRead(Payload):
    """A member read a conversation up to a message."""

    conversation_id: Id
    reader_id: Id
    last_read_message_id: Id | None = None
    read_at: Timestamp | None = None


class ChatConversationUpdated(Payload):
    """A conversation's row in the list changed: its last message, its unread count."""

    conversation_id: Id
    unread_count: Count = Field(description="the recipient's unread messages in this conversation")
    total_unread_count: Count | None = Field(
        default=None, description="the recipient's chat badge, all conversations"
    )
    last_message_id: Id | None = None
    last_message_preview: Text | None = None
    last_message_at: Timestamp | None = None


class ChatTypingStarted(Payload):
    """A member started typing; clients show it for a few seconds unless refreshed."""

    conversation_id: Id
    user_id: Id


class ChatTypingStopped(Payload):
    """A member stopped typing."""

    conversation_id: Id
    user_id: Id


class ChatReceiptUpdated(Payload):
    """A message's delivery state for one member: sent, delivered or read."""

    conversation_id: Id
    message_id: Id
    user_id: Id = Field(description="the member whose receipt this is")
    state: Literal["sent", "delivered", "read"]
    at: Timestamp | None = None


EVENTS = (
    event("chat.message", ChatMessage, ordering=_CONVERSATION),
    event("chat.read", ChatRead, ordering=_CONVERSATION),
    event("chat.conversation.updated", ChatConversationUpdated, ordering=_CONVERSATION),
    event("chat.typing.started", ChatTypingStarted, ordering=_CONVERSATION, priority="urgent"),
    event("chat.typing.stopped", ChatTypingStopped, ordering=_CONVERSATION, priority="urgent"),
    event("chat.receipt.updated", ChatReceiptUpdated, ordering=_CONVERSATION, priority="urgent"),
)
