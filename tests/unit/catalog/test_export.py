"""The catalog as JSON Schema: `fanout schema`'s document and the one the TypeScript generator reads."""

from __future__ import annotations

from typing import Any

from fanout.catalog import CURRENT, KNOWN_TYPES, SPECS
from fanout.catalog.export import catalog_document, typescript_document


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_schema_lists_every_payload_with_its_type_version_and_policy() -> None:
    """`fanout schema` holds the queue body, the client envelope and one entry per catalogued version."""
    doc = catalog_document()
    assert {"$schema", "queueBody", "clientEnvelope", "events"} == set(doc)
    assert {s.key for s in SPECS} == {f"{e['type']}@{e['version']}" for e in doc["events"]}
    typing = next(e for e in doc["events"] if e["type"] == "chat.typing.started")
    assert {"maxAgeS": 5, "rounds": 0, "orderingKey": ["conversationId"], "priority": "urgent"} == typing[
        "policy"
    ]
    assert (True, "chat") == (typing["current"], typing["domain"])
    assert {"conversationId", "userId"} == set(typing["payload"]["required"])
    assert typing["payload"]["additionalProperties"] is True  # forward compatible: unknown fields pass
    assert "payloadVersion" in doc["queueBody"]["$defs"]["Meta"]["properties"]


def test_typescript_document_maps_each_type_to_its_current_payload() -> None:
    """The generator's root maps every catalogued type to its current model; every $ref resolves."""
    doc = typescript_document()
    assert KNOWN_TYPES == set(doc["properties"]) == set(doc["required"])
    assert {"$ref": f"#/$defs/{CURRENT['chat.message'].model.__name__}"} == doc["properties"]["chat.message"]
    defs = doc["$defs"]
    assert all(ref.removeprefix("#/$defs/") in defs for ref in _refs(doc))
    assert len(SPECS) == len(defs["CatalogEnvelope"]["oneOf"])
    envelope = defs["ChatMessageEnvelope"]
    assert {"const": "chat.message"} == envelope["properties"]["type"]
    assert {"v", "id", "type", "payload", "sentAt"} == set(envelope["required"])
    assert not any("title" in p for d in defs.values() for p in d.get("properties", {}).values())
