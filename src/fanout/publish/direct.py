"""Direct publishers: one SQS (or SNS) send per event in the caller's time, whatever the audience.

With an ordering key (``ordering_key=...``, or the catalog's in ``send_event``) and a sequence allocator
(``fanout.sequence``) an event gets the next ``seq`` of its key; on a FIFO queue or topic (a name ending in
``.fifo``) the key is its ``MessageGroupId`` and the event id its deduplication id, so SQS hands a key's
events out one at a time, in order.

A body over the destination's limit is refused with ``InvalidMessage("too_large")`` before the call:
1 MiB for SQS, 256 KiB (262,144 bytes) for SNS, whose ``Publish`` did not grow when SQS's messages did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict, Unpack

from ulid import ULID

from fanout import queues
from fanout.catalog import ACCESS_REVOKED, CURRENT, Payload, spec_of
from fanout.config import Settings, aio_session, boto3_session
from fanout.envelope import MAX_BODY_BYTES, MAX_FRAME_BYTES, MAX_SEQ, QueueBody, now_iso, validate
from fanout.errors import ConfigError, InvalidMessage
from fanout.sequence import SequenceAllocator, SyncSequenceAllocator

Via = Literal["sqs", "sns"]
#: SNS's limit for one ``Publish``, message and attributes together (SQS takes 1 MiB, SNS still 256 KiB).
MAX_SNS_BYTES = 256 * 1024


def new_event_id() -> str:
    """A unique, time-sortable event id such as ``evt_01JD...``."""
    return f"evt_{ULID()}"


def build_event(
    event_type: str,
    *,
    user_ids: Iterable[str] = (),
    topics: Iterable[str] = (),
    broadcast: bool = False,
    exclude_connection_ids: Iterable[str] = (),
    connection_ids: Iterable[str] = (),
    payload: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    ordering_key: str | None = None,
    seq: int | None = None,
) -> QueueBody:
    """Build and validate a queue body; raises ``InvalidMessage`` with a reason on bad input.
    ``ordering_key`` and ``seq`` land in ``meta.orderingKey`` and ``meta.seq``."""
    lists = {
        "userIds": user_ids,
        "topics": topics,
        "excludeConnectionIds": exclude_connection_ids,
        "connectionIds": connection_ids,
    }
    for name, given in lists.items():
        if isinstance(given, str):  # list("u42") is ["u", "4", "2"]: other users entirely
            raise InvalidMessage("schema", f"target.{name}: a list of strings, not one string")
    extra: dict[str, Any] = {"orderingKey": ordering_key} if ordering_key is not None else {}
    if seq is not None:
        extra["seq"] = seq
    doc = {
        "v": 1,
        "id": event_id or new_event_id(),
        "type": event_type,
        "payload": dict(payload or {}),
        "sentAt": now_iso(),
        "target": {
            "userIds": list(user_ids),
            "topics": list(topics),
            "broadcast": broadcast,
            "excludeConnectionIds": list(exclude_connection_ids),
            "connectionIds": list(connection_ids),
        },
        "meta": dict(meta or {}) | extra,
    }
    return validate(doc)


class Audience(TypedDict, total=False):
    """Who receives a catalog event, and its id: ``build_event``'s arguments besides type, payload, meta."""

    user_ids: Iterable[str]
    topics: Iterable[str]
    broadcast: bool
    exclude_connection_ids: Iterable[str]
    event_id: str | None


def catalog_event(
    payload: Payload, *, meta: Mapping[str, Any] | None = None, **audience: Unpack[Audience]
) -> QueueBody:
    """Build a catalogued event from its payload model: the type, ``meta.payloadVersion`` and
    ``meta.orderingKey`` come from the payload's catalog entry. ``TypeError`` for a payload that is not
    a catalog model; ``InvalidMessage`` when the event would be dead-lettered."""
    if not isinstance(payload, Payload):
        raise TypeError(f"expected a fanout.catalog payload model, got {type(payload).__name__}")
    spec = spec_of(type(payload))
    wire = payload.wire()
    hints = {**(meta or {}), "payloadVersion": spec.version}
    key = spec.ordering_key(wire)
    if key is not None and hints.get("orderingKey") is None:
        hints["orderingKey"] = key
    return build_event(spec.type, payload=wire, meta=hints, **audience)


def revocation(user_ids: Iterable[str], topics: Iterable[str], *, event_id: str | None = None) -> QueueBody:
    """A ``system.access.revoked`` event: the worker takes ``topics`` (1 to 100 ``kind:id``, never
    ``user:``) off every connection of ``user_ids``, then posts the event to each of them
    (docs/protocol.md section 8). Send it with any publisher's ``send`` (or the outbox's ``add``);
    ``InvalidMessage`` on bad input, with the worker's reason."""
    if isinstance(topics, str):
        raise TypeError("topics: a list of kind:id topics, not one string")
    return build_event(
        ACCESS_REVOKED,
        user_ids=user_ids,
        payload={"topics": list(topics)},
        meta={"payloadVersion": CURRENT[ACCESS_REVOKED].version},
        event_id=event_id,
    )


#: What a ``seq`` adds to a client frame at most: ``,"seq":9007199254740991``.
_SEQ_BYTES = len(',"seq":') + len(str(MAX_SEQ))


def with_seq(body: QueueBody, seq: int) -> QueueBody:
    """The event with ``meta.seq`` set (a catalog event whose key got its next ``seq``)."""
    seqd = body.model_copy(update={"meta": body.meta.model_copy(update={"seq": seq})})
    seqd.__dict__.pop("client_frame", None)  # the copy's cached frame is the one without its seq
    return seqd


def _needs_seq(body: QueueBody, sequences: object) -> str | None:
    """The key to allocate a ``seq`` for: the event has a key, no ``seq``, and an allocator is set.
    ``InvalidMessage("too_large")`` when the frame has no room for one, before any is taken."""
    key = body.meta.ordering_key
    if sequences is None or key is None or body.meta.seq is not None:
        return None
    if len(body.client_frame) + _SEQ_BYTES > MAX_FRAME_BYTES:
        raise InvalidMessage("too_large", f"client frame with its seq over {MAX_FRAME_BYTES} bytes")
    return key


def fifo_fields(destination: str, body: QueueBody) -> dict[str, str]:
    """A FIFO destination's group (the ordering key, else the event id) and deduplication id (the
    event id); nothing for a standard one."""
    return queues.fifo_fields(destination, body.meta.ordering_key or body.id, body.id)


def wire_text(body: QueueBody, via: Via) -> str:
    """The body as sent; ``InvalidMessage("too_large")`` over the destination's limit (SNS's 256 KiB, no
    message attributes are sent; SQS's 1 MiB), in the caller's path rather than as a refused call."""
    text = body.to_json()
    size = len(text.encode())
    limit = MAX_SNS_BYTES if via == "sns" else MAX_BODY_BYTES
    if size > limit:
        raise InvalidMessage("too_large", f"body of {size} bytes is over {limit} ({via.upper()}'s limit)")
    return text


def _topic_arn(settings: Settings, create: Any) -> str:
    if settings.topic_arn:
        return settings.topic_arn
    if settings.is_dev:
        return str(create(Name=settings.topic_name)["TopicArn"])  # idempotent; local stack only
    raise ConfigError("FANOUT_TOPIC_ARN is required to publish through SNS when FANOUT_ENV=production")


class Publisher:
    """Synchronous publisher (boto3). Create once per process and reuse; it is thread-safe."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        via: Via = "sqs",
        sequences: SyncSequenceAllocator | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.via = via
        self.sequences = sequences
        client: Any = boto3_session(self.settings).client(via, **self.settings.aws_client_kwargs())
        self._client = client
        if via == "sqs":
            self._dest = queues.url(client, self.settings)
        else:
            self._dest = _topic_arn(self.settings, client.create_topic)

    def send(self, body: QueueBody) -> str:
        """Send a built event; returns its id. ``InvalidMessage("too_large")`` over the destination's
        limit (SNS: 256 KiB), before any call."""
        text = wire_text(body, self.via)
        fifo = fifo_fields(self._dest, body)
        if self.via == "sqs":
            self._client.send_message(QueueUrl=self._dest, MessageBody=text, **fifo)
        else:
            self._client.publish(TopicArn=self._dest, Message=text, **fifo)
        return body.id

    def publish(self, event_type: str, *, ordering_key: str | None = None, **kwargs: Any) -> str:
        """Build, validate and send one event (see ``build_event`` for the arguments); returns its id.
        With ``ordering_key`` and a sequence allocator, the event gets the key's next ``seq``, once it is
        valid: an event refused for its input takes no ``seq`` (a gap clients would resync)."""
        body = build_event(event_type, ordering_key=ordering_key, **kwargs)
        if ordering_key is not None and (key := _needs_seq(body, self.sequences)) is not None:
            assert self.sequences is not None
            body = with_seq(body, self.sequences.next(key))
        return self.send(body)

    def send_event(
        self, payload: Payload, *, meta: Mapping[str, Any] | None = None, **audience: Unpack[Audience]
    ) -> str:
        """Publish a catalog payload (``publisher.send_event(ChatMessage(...), user_ids=[...])``): its
        type, version and ordering key come from the catalog (with a sequence allocator, the key's next
        ``seq`` too); returns the event id."""
        body = catalog_event(payload, meta=meta, **audience)
        if (key := _needs_seq(body, self.sequences)) is not None:
            assert self.sequences is not None
            body = with_seq(body, self.sequences.next(key))
        return self.send(body)

    def revoke_topics(self, user_ids: Iterable[str], topics: Iterable[str]) -> str:
        """Take ``topics`` away from ``user_ids`` live (``revocation``); returns the event id."""
        return self.send(revocation(user_ids, topics))

    def close(self) -> None:
        self._client.close()


class AsyncPublisher:
    """Asynchronous publisher (aiobotocore); use as ``async with AsyncPublisher(settings) as pub``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        via: Via = "sqs",
        sequences: SequenceAllocator | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.via = via
        self.sequences = sequences
        self._cm: Any = None
        self._client: Any = None
        self._dest = ""

    async def __aenter__(self) -> AsyncPublisher:
        self._cm = aio_session(self.settings).create_client(self.via, **self.settings.aws_client_kwargs())
        self._client = await self._cm.__aenter__()
        try:
            if self.via == "sqs":
                self._dest = await queues.aurl(self._client, self.settings)
            elif self.settings.topic_arn:
                self._dest = self.settings.topic_arn
            elif self.settings.is_dev:
                self._dest = (await self._client.create_topic(Name=self.settings.topic_name))["TopicArn"]
            else:
                raise ConfigError("FANOUT_TOPIC_ARN is required to publish through SNS in production")
        except BaseException:
            await self._cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)

    async def send(self, body: QueueBody) -> str:
        """Send a built event; returns its id (``InvalidMessage("too_large")`` as ``Publisher.send``)."""
        text = wire_text(body, self.via)
        fifo = fifo_fields(self._dest, body)
        if self.via == "sqs":
            await self._client.send_message(QueueUrl=self._dest, MessageBody=text, **fifo)
        else:
            await self._client.publish(TopicArn=self._dest, Message=text, **fifo)
        return body.id

    async def publish(self, event_type: str, *, ordering_key: str | None = None, **kwargs: Any) -> str:
        """Build, validate and send one event; returns its id. With ``ordering_key`` and a sequence
        allocator, the event gets the key's next ``seq`` once it is valid (a failed send leaves a gap that
        clients resync; an event refused for its input takes none)."""
        body = build_event(event_type, ordering_key=ordering_key, **kwargs)
        if ordering_key is not None and (key := _needs_seq(body, self.sequences)) is not None:
            assert self.sequences is not None
            body = with_seq(body, await self.sequences.next(key))
        return await self.send(body)

    async def send_event(
        self, payload: Payload, *, meta: Mapping[str, Any] | None = None, **audience: Unpack[Audience]
    ) -> str:
        """Publish a catalog payload; its type, version and ordering key come from the catalog (with a
        sequence allocator, the key's next ``seq`` too)."""
        body = catalog_event(payload, meta=meta, **audience)
        if (key := _needs_seq(body, self.sequences)) is not None:
            assert self.sequences is not None
            body = with_seq(body, await self.sequences.next(key))
        return await self.send(body)

    async def revoke_topics(self, user_ids: Iterable[str], topics: Iterable[str]) -> str:
        """Take ``topics`` away from ``user_ids`` live (``revocation``); returns the event id."""
        return await self.send(revocation(user_ids, topics))
