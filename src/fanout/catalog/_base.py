"""What every catalog entry is made of: the payload base model, the field types, and ``EventSpec``.

Payload fields are snake_case in Python and camelCase on the wire. Every field type is strict (a count
is a JSON integer, never ``"5"`` or ``5.0``), because the payload reaches clients unchanged and must be
what the generated TypeScript types say.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from fanout.catalog.policy import Policy, Priority, domain_of, prefix_policy
from fanout.errors import InvalidMessage

Id = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256)]
Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256)]
Text = Annotated[str, Strict(), StringConstraints(max_length=10_000)]
Url = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=2048)]
Count = Annotated[int, Strict(), Field(ge=0)]
#: Topics are ``kind:id`` (``user:u1``, ``event:42``, ``organization:7``, ``conversation:c9``).
TOPIC_PATTERN = r"^[a-z][a-z0-9_]{0,31}:[A-Za-z0-9_.@=+-][A-Za-z0-9_.:@=+-]{0,127}$"
Timestamp = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"),
    Field(json_schema_extra={"format": "date-time"}),
]


class Payload(BaseModel):
    """Base of every catalog payload: camelCase on the wire, unknown fields kept for forward compatibility."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The payload as it travels: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One version of one event type: its payload model and its delivery policy."""

    type: str
    version: int
    model: builtins.type[Payload]
    policy: Policy
    users_only: bool = False  # its target may name userIds alone (no topics, connections or broadcast)

    @property
    def domain(self) -> str:
        return domain_of(self.type)

    @property
    def key(self) -> str:
        """``chat.message@1``: the name of this version in the schema snapshot."""
        return f"{self.type}@{self.version}"

    def check(self, payload: Mapping[str, Any]) -> None:
        """Validate a wire payload (camelCase keys only); ``InvalidMessage("payload_schema")`` if it
        does not match. The detail names the field, never its value."""
        try:
            self.model.__pydantic_validator__.validate_python(payload, by_name=False)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise InvalidMessage(
                "payload_schema", f"{self.key}: payload.{where}: {first['msg']}"[:400]
            ) from None

    def ordering_key(self, payload: Mapping[str, Any]) -> str | None:
        """``meta.orderingKey`` for this payload: the domain and the ordering fields' values,
        ``chat:c9``; None for a type without ordering."""
        if not self.policy.ordering:
            return None
        return ":".join([self.domain, *(str(payload[field]) for field in self.policy.ordering)])


def event(
    event_type: str,
    model: type[Payload],
    *,
    version: int = 1,
    ordering: tuple[str, ...] = (),
    priority: Priority = "normal",
    users_only: bool = False,
) -> EventSpec:
    """Declare a catalog entry; its maximum age and rounds come from the type's prefix policy.
    ``users_only``: a body of this type that targets anything but ``userIds`` is invalid."""
    base = prefix_policy(event_type)
    policy = Policy(base.max_age_s, base.rounds, ordering, priority)
    return EventSpec(event_type, version, model, policy, users_only)
