"""One realistic payload per catalogued type: what the product's services send (the plan's features)."""

from __future__ import annotations

from fanout.catalog import (
    ActivityFeedUpdated,
    AttendeePreview,
    ChatConversationUpdated,
    ChatMessage,
    ChatRead,
    ChatReceiptUpdated,
    ChatTypingStarted,
    ChatTypingStopped,
    EventAttendanceUpdated,
    EventRsvpUpdated,
    EventSavedUpdated,
    EventUpcomingUpdated,
    FollowRequestCreated,
    FollowRequestUpdated,
    NotificationNew,
    NotificationRead,
    NotificationUnreadUpdated,
    OrganizationAnnouncement,
    OrganizationMemberUpdated,
    Payload,
    SystemAccessRevoked,
    SystemBroadcast,
    SystemHeartbeat,
    SystemNotice,
    SystemReconnect,
    SystemReplay,
    UserPresenceUpdated,
)

AT = "2026-02-17T09:30:00.000Z"

EXAMPLES: dict[str, Payload] = {
    "notification.new": NotificationNew(
        notification_id="ntf_1", kind="follow", title="Ada wants to follow you", url="/inbox", actor_id="u_ada",
        created_at=AT, unread_count=3,
    ),
    "notification.read": NotificationRead(notification_ids=["ntf_1", "ntf_2"], read_at=AT, unread_count=1),
    "notification.unread.updated": NotificationUnreadUpdated(unread_count=4),
    "chat.message": ChatMessage(
        conversation_id="c9", message_id="m1", sender_id="u_ada", text="see you at 7?", created_at=AT,
        client_message_id="tmp-17",
    ),
    "chat.read": ChatRead(conversation_id="c9", reader_id="u_bob", last_read_message_id="m1", read_at=AT),
    "chat.conversation.updated": ChatConversationUpdated(
        conversation_id="c9", unread_count=2, total_unread_count=5, last_message_id="m1",
        last_message_preview="see you at 7?", last_message_at=AT,
    ),
    "chat.typing.started": ChatTypingStarted(conversation_id="c9", user_id="u_ada"),
    "chat.typing.stopped": ChatTypingStopped(conversation_id="c9", user_id="u_ada"),
    "chat.receipt.updated": ChatReceiptUpdated(
        conversation_id="c9", message_id="m1", user_id="u_bob", state="delivered", at=AT
    ),
    "follow.request.created": FollowRequestCreated(
        request_id="fr_1", from_user_id="u_ada", to_user_id="u_bob", from_user_name="Ada", created_at=AT
    ),
    "follow.request.updated": FollowRequestUpdated(request_id="fr_1", status="accepted", updated_at=AT),
    "event.rsvp.updated": EventRsvpUpdated(
        event_id="ev42", going_count=31, interested_count=12, capacity=40,
        attendee_previews=[AttendeePreview(user_id="u_ada", name="Ada"), AttendeePreview(user_id="u_cy")],
    ),
    "event.upcoming.updated": EventUpcomingUpdated(
        event_id="ev42", status="going", title="Friday run club", starts_at="2026-02-20T18:00:00+01:00"
    ),
    "event.saved.updated": EventSavedUpdated(event_id="ev42", saved=True, at=AT),
    "event.attendance.updated": EventAttendanceUpdated(event_id="ev42", checked_in_count=17, going_count=31),
    "organization.member.updated": OrganizationMemberUpdated(
        organization_id="org7", user_id="u_bob", status="active", role="admin", updated_at=AT
    ),
    "organization.announcement": OrganizationAnnouncement(
        organization_id="org7", announcement_id="an_1", title="New season", preview="Sign-ups open", created_at=AT
    ),
    "activity.feed.updated": ActivityFeedUpdated(new_count=2, item_ids=["act_1", "act_2"], latest_at=AT),
    "user.presence.updated": UserPresenceUpdated(user_id="u_ada", status="online"),
    "system.heartbeat": SystemHeartbeat(at=AT),
    "system.reconnect": SystemReconnect(reason="maintenance", after_ms=2000),
    "system.notice": SystemNotice(notice_id="n_1", severity="warning", title="Scheduled maintenance at 22:00"),
    "system.broadcast": SystemBroadcast(broadcast_id="b_1", title="We're back", body="Thanks for waiting"),
    "system.replay": SystemReplay(),
    "system.access.revoked": SystemAccessRevoked(topics=["organization:org7", "conversation:c9"]),
}  # fmt: skip


def payload(event_type: str, **extra: object) -> dict[str, object]:
    """A valid wire payload for a catalogued type (its example), with ``extra`` fields added."""
    base = EXAMPLES[event_type].model_dump(mode="json", by_alias=True, exclude_none=True)
    return {**base, **extra}
