"""``chat.typing`` and ``chat.ack``: typing indicators and receipts, answered by fanout itself.

Both need the sender to be a participant of the conversation (``live.Participants``, the product's
resolver or its ``conversations`` collection) and are rate-limited per connection on its record, as
forwarded frames are. docs/protocol.md sections 16 and 18 are the contract.

- ``chat.typing`` ``started`` publishes ``chat.typing.started`` to the other participants and schedules a
  ``chat.typing.stopped`` ``FANOUT_TYPING_TIMEOUT_S`` later, which the worker posts only if no newer
  ``started`` or explicit ``stopped`` came (``live/indicators.py``). ``stopped`` publishes the stop at
  once, if the user was typing.
- ``chat.ack`` raises the acknowledging user's receipt of a message to ``delivered`` or ``read`` and, on a
  real increase only, tells the message's sender's connections with ``chat.receipt.updated``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fanout.catalog import ChatReceiptUpdated, ChatTypingStarted, ChatTypingStopped
from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.emit import Outgoing, emit
from fanout.lifecycle.limits import limited
from fanout.lifecycle.replies import Response, error, reply
from fanout.live.events import event
from fanout.live.presence import iso
from fanout.live.receipts import AckState

TYPING_STATES = ("started", "stopped")
ACK_STATES = ("delivered", "read")


def ident(value: Any) -> str | None:
    """An id from a frame: a string of 1 to 256 characters, else None."""
    return value if isinstance(value, str) and 0 < len(value) <= 256 else None


async def typing(services: Services, frame: Frame) -> Response:
    """``{"action":"chat.typing","conversationId":"c9","state":"started"}``: answered ``chat.typing.ok``."""
    conversation, state = ident(frame.body.get("conversationId")), frame.body.get("state")
    if conversation is None:
        return error("bad_request", frame.reply_to, field="conversationId")
    if state not in TYPING_STATES:
        return error("bad_request", frame.reply_to, field="state")
    if refused := await limited(services, frame, "typing", services.settings.typing_rate):
        return refused
    members = await services.live.participants.of(conversation)
    user = frame.user_id
    if user not in members:
        return error("not_a_participant", frame.reply_to)
    others = [m for m in members if m != user]
    sent = True
    if others and state == "started":
        token = await services.live.typing.start(conversation, user)
        timeout = services.settings.typing_timeout_s
        due = datetime.now(UTC) + timedelta(seconds=timeout)
        started = event(ChatTypingStarted(conversation_id=conversation, user_id=user), others)
        stop = event(ChatTypingStopped(conversation_id=conversation, user_id=user), others, sent_at=due)
        sent = await emit(services, Outgoing(started), Outgoing(stop, timeout, f"typing:{token}"))
        if not sent:  # nobody saw the start: a later stopped must not announce a stop nobody expects
            await services.live.typing.settle(conversation, user, token)  # if no newer start replaced it
    elif others and await services.live.typing.stop(conversation, user):
        sent = await emit(
            services, Outgoing(event(ChatTypingStopped(conversation_id=conversation, user_id=user), others))
        )
    if not sent:
        return error("publish_failed", frame.reply_to, message="try again later")
    return reply("chat.typing.ok", {"conversationId": conversation, "state": state}, frame.reply_to)


async def ack(services: Services, frame: Frame) -> Response:
    """``{"action":"chat.ack","conversationId":"c9","messageId":"m1","senderId":"u2","state":"read"}``:
    answered ``chat.ack.ok`` with the state the receipt holds now."""
    body = frame.body
    found: list[str] = []
    for name in ("conversationId", "messageId", "senderId"):
        value = ident(body.get(name))
        if value is None:
            return error("bad_request", frame.reply_to, field=name)
        found.append(value)
    conversation, message, sender = found
    state = body.get("state")
    if state not in ACK_STATES:
        return error("bad_request", frame.reply_to, field="state")
    if refused := await limited(services, frame, "ack", services.settings.ack_rate):
        return refused
    members = await services.live.participants.of(conversation)
    user = frame.user_id
    if user not in members or sender not in members:
        return error("not_a_participant", frame.reply_to)
    held: AckState = state
    raised_at = None
    if sender != user:  # a receipt of one's own message tells nobody anything
        held, raised_at = await services.live.receipts.raise_to(conversation, message, user, held)
    if raised_at is not None:
        payload = ChatReceiptUpdated(
            conversation_id=conversation, message_id=message, user_id=user, state=held, at=iso(raised_at)
        )
        if not await emit(services, Outgoing(event(payload, [sender]))):
            await services.live.receipts.undo(conversation, message, user, raised_at)
            return error("publish_failed", frame.reply_to, message="try again later")
    return reply(
        "chat.ack.ok", {"conversationId": conversation, "messageId": message, "state": held}, frame.reply_to
    )
