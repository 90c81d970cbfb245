"""The catalog as JSON Schema: everything for ``fanout schema``, and the one document the TypeScript
generator turns into ``clients/typescript/src/catalog.ts``."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import CoreSchema

from fanout.catalog import CURRENT, SPECS, EventSpec, Payload
from fanout.catalog.policy import Policy
from fanout.envelope import json_schemas

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_MODE: JsonSchemaMode = "validation"


class _Schema(GenerateJsonSchema):
    """Pydantic's schemas without a title per field ("Conversation Id"): models keep theirs."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def payload_schema(spec: EventSpec) -> dict[str, Any]:
    """The JSON Schema of one catalogued payload version, self-contained."""
    return spec.model.model_json_schema(by_alias=True, schema_generator=_Schema)


def policy_document(policy: Policy) -> dict[str, Any]:
    """A policy as it is published: maximum age, rounds, ordering key fields, priority."""
    return {
        "maxAgeS": policy.max_age_s,
        "rounds": policy.rounds,
        "orderingKey": list(policy.ordering),
        "priority": policy.priority,
    }


def catalog_document() -> dict[str, Any]:
    """``fanout schema``: the queue body, the client envelope and every catalogued payload, each with
    its type, version, domain and delivery policy."""
    events = [
        {
            "type": spec.type,
            "version": spec.version,
            "current": CURRENT[spec.type] is spec,
            "domain": spec.domain,
            "policy": policy_document(spec.policy),
            "usersOnly": spec.users_only,  # its target may name userIds alone
            "payload": payload_schema(spec),
        }
        for spec in sorted(SPECS, key=lambda s: (s.type, s.version))
    ]
    return {"$schema": DIALECT, **json_schemas(), "events": events}


def _envelope(spec: EventSpec, payload_ref: dict[str, Any]) -> dict[str, Any]:
    """The client envelope of one catalogued type and version, as a closed object."""
    return {
        "title": f"{spec.model.__name__}Envelope",
        "description": f"The frame a client receives for {spec.key}.",
        "type": "object",
        "properties": {
            "v": {"const": 1},
            "id": {"type": "string"},
            "type": {"const": spec.type},
            "payload": payload_ref,
            "sentAt": {"type": "string", "format": "date-time"},
            "seq": {"type": "integer", "minimum": 0},
            "key": {"type": "string"},  # the ordering key, beside seq (docs/protocol.md section 20)
        },
        "required": ["v", "id", "type", "payload", "sentAt"],
        "additionalProperties": False,
    }


def typescript_document() -> dict[str, Any]:
    """One schema whose root is ``CatalogPayloads`` (event type -> its current payload) and whose
    definitions hold every payload model and ``CatalogEnvelope``, the union of typed client frames."""
    models: list[type[Payload]] = [spec.model for spec in SPECS]
    refs, top = models_json_schema([(m, _MODE) for m in models], by_alias=True, schema_generator=_Schema)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    envelopes = []
    for spec in SPECS:
        name = f"{spec.model.__name__}Envelope"
        defs[name] = _envelope(spec, refs[(spec.model, _MODE)])
        envelopes.append({"$ref": f"#/$defs/{name}"})
    defs["CatalogEnvelope"] = {
        "title": "CatalogEnvelope",
        "description": "Every frame a client can receive for a catalogued event; switch on `type`.",
        "oneOf": envelopes,
    }
    payloads = {t: refs[(spec.model, _MODE)] for t, spec in sorted(CURRENT.items())}
    return {
        "$schema": DIALECT,
        "title": "CatalogPayloads",
        "description": "Event type -> the payload its current version carries: the map publishers take.",
        "type": "object",
        "properties": payloads,
        "required": sorted(payloads),
        "additionalProperties": False,
        "$defs": defs,
    }
