"""Wire models: the queue body (v1), the client envelope, SNS unwrapping and their JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import from_json

from fanout.catalog import DOMAINS, TOPIC_PATTERN, domain_of, lookup, versions_of
from fanout.errors import InvalidMessage

MAX_BODY_BYTES = 1024 * 1024  # SQS's limit for one message
MAX_FRAME_BYTES = 128 * 1024  # API Gateway's limit for one WebSocket frame
MAX_SEQ = 2**53 - 1  # the largest meta.seq: a browser's Number holds it exactly

#: An event type: dotted lower-case words (``notification.new``), at most 128 characters.
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
EventType = Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN, max_length=128)]
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]+$", min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
#: Topics are ``kind:id`` (``fanout.catalog.TOPIC_PATTERN``: payloads name topics too).
Topic = Annotated[str, StringConstraints(pattern=TOPIC_PATTERN)]
#: An ordering key: what SQS accepts as a FIFO ``MessageGroupId`` (1-128 printable ASCII characters).
#: Name it like a topic (``conversation:c9``, ``user:u1``) so clients can resume it.
ORDERING_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
OrderingKey = Annotated[str, StringConstraints(pattern=ORDERING_KEY_PATTERN)]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Target(_Wire):
    """Who receives an event: users, topic subscribers, single connections (a reply to one tab), or
    everyone, less some connections."""

    # fail_fast: a list's first bad entry refuses the body. Collecting the errors of every entry of a
    # 1 MiB body (260,000 empty ids) held the worker's loop for about 3 s.
    user_ids: list[Name] = Field(default_factory=list, max_length=100_000, fail_fast=True)
    topics: list[Topic] = Field(default_factory=list, max_length=1_000, fail_fast=True)
    broadcast: StrictBool = False  # true or false only: "yes", 1 or "1" must not reach everyone
    exclude_connection_ids: list[Name] = Field(default_factory=list, max_length=10_000, fail_fast=True)
    connection_ids: list[Name] = Field(default_factory=list, max_length=1_000, fail_fast=True)

    @field_validator("user_ids", "topics", "exclude_connection_ids", "connection_ids")
    @classmethod
    def _no_duplicates(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("duplicate entries")
        return values

    def is_empty(self) -> bool:
        return not (self.user_ids or self.topics or self.broadcast or self.connection_ids)


class Meta(_Wire):
    """Optional publisher hints; unknown keys are kept for forward compatibility."""

    model_config = ConfigDict(extra="allow")

    source: str | None = None
    trace_id: str | None = None
    ordering_key: OrderingKey | None = None
    seq: StrictInt | None = Field(None, ge=0, le=MAX_SEQ)
    expires_at: datetime | None = None
    # Left out of the body when unset, so bodies written without it stay byte for byte the same.
    payload_version: StrictInt | None = Field(None, ge=1, le=1000, exclude_if=lambda v: v is None)

    @field_validator("expires_at")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        # Without an offset it is UTC: read as local time, 0001-01-01 had no timestamp and broke the worker.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @model_validator(mode="after")
    def _finite(self) -> Meta:
        # A body parsed straight from its bytes reads NaN, Infinity and 1e400 (as inf) in the keys kept
        # as they are; refused here, the body takes parse_body's strict path and gets its reason there.
        if self.model_extra:  # rare: the common body pays this test only
            json.dumps(self.model_extra, allow_nan=False, default=str)  # ValueError: NaN, Infinity, 1e400
        return self


def _utc(value: str) -> str:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("must carry a UTC offset, e.g. 2026-02-17T00:00:00.000Z")
    return value


class QueueBody(_Wire):
    """The queue message body, version 1 (docs/protocol.md section 2)."""

    v: Literal[1]
    id: EventId
    type: EventType
    payload: dict[str, Any]
    sent_at: Annotated[str, StringConstraints(max_length=40)]
    target: Target
    meta: Meta = Meta()

    _check_sent_at = field_validator("sent_at")(_utc)

    @field_validator("v", mode="before")
    @classmethod
    def _the_number_one(cls, value: Any) -> Any:
        if type(value) is not int:  # true and 1.0 compare equal to 1, and are not a version
            raise ValueError("v must be the number 1")
        return value

    @property
    def payload_version(self) -> int:
        """The version of the payload's schema (``meta.payloadVersion``, 1 when absent)."""
        return self.meta.payload_version or 1

    @cached_property
    def sent_at_epoch(self) -> float:
        """``sentAt`` as seconds since the epoch (read three times per event: parsed once)."""
        return datetime.fromisoformat(self.sent_at).timestamp()

    @cached_property
    def client_frame(self) -> bytes:
        """The one text frame every recipient gets; serialized once per event."""
        envelope: dict[str, Any] = {
            "v": 1,
            "id": self.id,
            "type": self.type,
            "payload": self.payload,
            "sentAt": self.sent_at,
        }
        if self.meta.seq is not None:
            envelope["seq"] = self.meta.seq
        if self.meta.ordering_key is not None:
            envelope["key"] = self.meta.ordering_key
        if (self.meta.payload_version or 1) != 1:  # absent means 1, as in a client's hello
            envelope["payloadVersion"] = self.meta.payload_version
        # allow_nan=False: a browser's JSON.parse rejects NaN/Infinity (a float overflow such as 1e400).
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def for_users(self, user_ids: set[str]) -> QueueBody:
        """This event with its user list narrowed to ``user_ids``: what a remainder still needs."""
        users = [u for u in self.target.user_ids if u in user_ids]
        return self.model_copy(update={"target": self.target.model_copy(update={"user_ids": users})})

    def to_json(self) -> str:
        """The body as published to the queue. U+FFFE and U+FFFF, which a string may hold (as JSON escapes
        in the body received) and SQS refuses in a message, stay escaped."""
        text = self.model_dump_json(by_alias=True, exclude_defaults=False)
        if "\ufffe" in text or "\uffff" in text:  # JSON's own escaping already covers the control characters
            text = text.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
        return text


class ClientEnvelope(BaseModel):
    """What a WebSocket client receives: one text frame per event (documentation and schema)."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1]
    id: EventId
    type: EventType
    payload: dict[str, Any]
    sentAt: str
    seq: int | None = None
    key: str | None = None
    payloadVersion: int | None = None


def now_iso() -> str:
    """The current time as ``2026-02-17T00:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_body(raw: str | bytes) -> QueueBody:
    """Parse a queue body, raw or wrapped in an SNS notification; raise ``InvalidMessage`` with a reason.

    The parser is pydantic's (jiter): it refuses ``NaN``/``Infinity``, lone surrogates and nesting over
    200 levels with a ``ValueError`` instead of exhausting the stack.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidMessage("too_large", f"body over {MAX_BODY_BYTES} bytes")
    # The common body, parsed and validated in one pass straight from the bytes: a quarter of the
    # cost of decoding to Python objects first. Anything it refuses, or that a later check refuses,
    # takes the path below, which names the reason.
    try:
        return _checked(QueueBody.model_validate_json(raw))
    except (ValidationError, InvalidMessage):
        pass
    doc = _json(raw, "body")
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "TopicArn" in doc:
        doc = _json(unwrap_sns(doc), "SNS Message")
    return validate(doc)


def _json(raw: str | bytes, what: str) -> Any:
    try:
        return from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidMessage("not_json", f"{what}: {str(exc)[:200]}") from None


def unwrap_sns(doc: dict[str, Any]) -> str:
    """The ``Message`` of an SNS notification; ``InvalidMessage`` when it is not a well-formed one."""
    message = doc.get("Message")
    if not isinstance(message, str):
        raise InvalidMessage("sns_missing_message", "SNS notification without a string Message")
    for field in ("MessageId", "Timestamp"):
        if not isinstance(doc.get(field), str):
            raise InvalidMessage("sns_bad_envelope", f"SNS notification without {field}")
    if doc.get("SignatureVersion", "1") not in ("1", "2") or not isinstance(doc.get("Signature", ""), str):
        raise InvalidMessage("sns_bad_envelope", "SNS notification with an unknown signature version")
    return message


def validate(doc: Any) -> QueueBody:
    """Validate a decoded body; raise ``InvalidMessage`` with a reason."""
    if not isinstance(doc, dict):
        raise InvalidMessage("schema", "body is not a JSON object")
    if type(doc.get("v")) is not int or doc["v"] != 1:
        raise InvalidMessage("unknown_version", f"v={doc.get('v')!r:.40}")
    try:
        body = QueueBody.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = "duplicate_target" if "duplicate" in first["msg"] else "schema"
        raise InvalidMessage(reason, f"{where}: {first['msg']}") from None
    return _checked(body)


def _checked(body: QueueBody) -> QueueBody:
    """The checks beyond the model: a known domain, someone targeted, the payload's own model, a frame
    that is strict JSON and fits in one WebSocket frame."""
    if domain_of(body.type) not in DOMAINS:
        raise InvalidMessage("unknown_domain", f"type {body.type!r}")
    if body.target.is_empty():
        raise InvalidMessage("empty_target", "no userIds, topics, connectionIds or broadcast")
    check_payload(body)
    try:
        frame = body.client_frame
    except UnicodeEncodeError:  # a str of the caller's holding a lone surrogate ("\ud800"): not UTF-8
        raise InvalidMessage("schema", "a string of the payload holds a lone surrogate (not UTF-8)") from None
    except ValueError:  # a number JSON cannot carry (1e400 parses as inf)
        raise InvalidMessage("schema", "payload holds a number out of JSON's range") from None
    if len(frame) > MAX_FRAME_BYTES:
        raise InvalidMessage("too_large", f"client frame over {MAX_FRAME_BYTES} bytes")
    return body


def check_payload(body: QueueBody) -> None:
    """Validate a catalogued type's payload against its model (``meta.payloadVersion``, default 1);
    ``InvalidMessage("payload_schema")`` when it does not match, ``InvalidMessage("bad_target")`` when
    the type takes ``userIds`` alone and the body targets more. Uncatalogued types pass unchecked."""
    version = body.meta.payload_version or 1
    spec = lookup(body.type, version)
    if spec is not None:
        spec.check(body.payload)
        if spec.users_only:  # the one test a common body pays; the rest only for such a type
            _users_only(body)
    elif versions_of(body.type):
        raise InvalidMessage("payload_schema", f"{body.type} has no payload version {version}")


def _users_only(body: QueueBody) -> None:
    """A type that reaches users as such (a revocation reaches every tab of its users): no topics,
    connections, broadcast or excluded connections."""
    t = body.target
    if t.topics or t.connection_ids or t.broadcast or t.exclude_connection_ids:
        raise InvalidMessage(
            "bad_target",
            f"{body.type} targets userIds only (no topics, connectionIds, broadcast or excludeConnectionIds)",
        )


def json_schemas() -> dict[str, Any]:
    """The JSON Schemas of the queue body and of the client envelope."""
    return {
        "queueBody": QueueBody.model_json_schema(by_alias=True),
        "clientEnvelope": ClientEnvelope.model_json_schema(by_alias=True),
    }
