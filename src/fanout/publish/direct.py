"""Direct publishers: one SQS (or SNS) send per event in the caller's time, whatever the audience."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict, Unpack

import boto3
from aiobotocore.session import get_session
from ulid import ULID

from fanout import queues
from fanout.catalog import Payload, spec_of
from fanout.config import Settings
from fanout.envelope import QueueBody, now_iso, validate
from fanout.errors import ConfigError

Via = Literal["sqs", "sns"]


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
) -> QueueBody:
    """Build and validate a queue body; raises ``InvalidMessage`` with a reason on bad input."""
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
        "meta": dict(meta or {}),
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


def _topic_arn(settings: Settings, create: Any) -> str:
    if settings.topic_arn:
        return settings.topic_arn
    if settings.is_dev:
        return str(create(Name=settings.topic_name)["TopicArn"])  # idempotent; local stack only
    raise ConfigError("FANOUT_TOPIC_ARN is required to publish through SNS when FANOUT_ENV=production")


class Publisher:
    """Synchronous publisher (boto3). Create once per process and reuse; it is thread-safe."""

    def __init__(self, settings: Settings | None = None, *, via: Via = "sqs") -> None:
        self.settings = settings or Settings()
        self.via = via
        client = boto3.client(via, **self.settings.aws_client_kwargs())  # type: ignore[call-overload]
        self._client: Any = client
        if via == "sqs":
            self._dest = queues.url(client, self.settings)
        else:
            self._dest = _topic_arn(self.settings, client.create_topic)

    def send(self, body: QueueBody) -> str:
        """Send a built event; returns its id."""
        if self.via == "sqs":
            self._client.send_message(QueueUrl=self._dest, MessageBody=body.to_json())
        else:
            self._client.publish(TopicArn=self._dest, Message=body.to_json())
        return body.id

    def publish(self, event_type: str, **kwargs: Any) -> str:
        """Build, validate and send one event (see ``build_event`` for the arguments); returns its id."""
        return self.send(build_event(event_type, **kwargs))

    def send_event(
        self, payload: Payload, *, meta: Mapping[str, Any] | None = None, **audience: Unpack[Audience]
    ) -> str:
        """Publish a catalog payload (``publisher.send_event(ChatMessage(...), user_ids=[...])``): its
        type, version and ordering key come from the catalog; returns the event id."""
        return self.send(catalog_event(payload, meta=meta, **audience))

    def close(self) -> None:
        self._client.close()


class AsyncPublisher:
    """Asynchronous publisher (aiobotocore); use as ``async with AsyncPublisher(settings) as pub``."""

    def __init__(self, settings: Settings | None = None, *, via: Via = "sqs") -> None:
        self.settings = settings or Settings()
        self.via = via
        self._cm: Any = None
        self._client: Any = None
        self._dest = ""

    async def __aenter__(self) -> AsyncPublisher:
        self._cm = get_session().create_client(self.via, **self.settings.aws_client_kwargs())
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
        if self.via == "sqs":
            await self._client.send_message(QueueUrl=self._dest, MessageBody=body.to_json())
        else:
            await self._client.publish(TopicArn=self._dest, Message=body.to_json())
        return body.id

    async def publish(self, event_type: str, **kwargs: Any) -> str:
        """Build, validate and send one event; returns its id."""
        return await self.send(build_event(event_type, **kwargs))

    async def send_event(
        self, payload: Payload, *, meta: Mapping[str, Any] | None = None, **audience: Unpack[Audience]
    ) -> str:
        """Publish a catalog payload; its type, version and ordering key come from the catalog."""
        return await self.send(catalog_event(payload, meta=meta, **audience))
