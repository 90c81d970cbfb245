"""Typed publishing: a catalog payload model makes the whole event, and mypy refuses anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api as mypy_api
from pydantic import BaseModel

from fanout.catalog import ChatMessage, NotificationNew, Payload
from fanout.errors import InvalidMessage
from fanout.publish import build_event, catalog_event, revocation

ROOT = Path(__file__).resolve().parents[2]


def test_the_model_gives_the_type_version_and_ordering_key() -> None:
    """send_event's body: the catalog's type, meta.payloadVersion and meta.orderingKey, camelCase payload."""
    payload = ChatMessage(conversation_id="c9", message_id="m1", sender_id="u2", text="hi")
    body = catalog_event(payload, user_ids=["u1"], meta={"traceId": "t-1"})
    assert ("chat.message", 1, "chat:c9", "t-1") == (
        body.type,
        body.meta.payload_version,
        body.meta.ordering_key,
        body.meta.trace_id,
    )
    assert {"conversationId": "c9", "messageId": "m1", "senderId": "u2", "text": "hi"} == body.payload
    assert '"payloadVersion":1' in body.to_json()


def test_a_caller_ordering_key_wins() -> None:
    """A publisher that sets meta.orderingKey itself keeps it."""
    payload = ChatMessage(conversation_id="c9", message_id="m1", sender_id="u2")
    assert (
        "mine"
        == catalog_event(payload, topics=["conversation:c9"], meta={"orderingKey": "mine"}).meta.ordering_key
    )


def test_a_revocation_is_built_for_users_and_refused_with_the_workers_reasons() -> None:
    """revocation() builds system.access.revoked for the users with its topics and payload version; bad
    topics are payload_schema as the worker would say, and one string is a TypeError, not 15 topics."""
    body = revocation(["u1", "u2"], ["organization:o1", "conversation:c9"], event_id="evt_r1")
    assert ("system.access.revoked", "evt_r1", ["u1", "u2"], 1) == (
        body.type, body.id, body.target.user_ids, body.meta.payload_version
    )  # fmt: skip
    assert {"topics": ["organization:o1", "conversation:c9"]} == body.payload
    for topics in ([], ["user:u1"], [f"organization:o{i}" for i in range(101)]):
        with pytest.raises(InvalidMessage) as caught:
            revocation(["u1"], topics)
        assert "payload_schema" == caught.value.reason
    with pytest.raises(TypeError):
        revocation(["u1"], "organization:o1")


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"text": "a\ud800"}, "a string of the payload holds a lone surrogate (not UTF-8)"),
        ({"k\udc00": 1}, "a string of the payload holds a lone surrogate (not UTF-8)"),
        ({"n": float("inf")}, "payload holds a number out of JSON's range"),
    ],
)
def test_a_payload_no_json_holds_is_refused_with_its_own_reason(
    payload: dict[str, object], detail: str
) -> None:
    """A lone surrogate in a payload string is named as such, as the TypeScript publisher names it (it
    was reported as a number out of JSON's range)."""
    with pytest.raises(InvalidMessage) as caught:
        build_event("notification.misc", user_ids=["u1"], payload=payload)
    assert ("schema", f"schema: {detail}") == (caught.value.reason, str(caught.value))


def test_a_payload_outside_the_catalog_is_refused_at_run_time() -> None:
    """A plain model, a dict, or a catalog model tampered past validation never becomes an event."""

    class Other(BaseModel):
        title: str

    with pytest.raises(TypeError, match=r"fanout\.catalog payload model"):
        catalog_event(Other(title="x"), user_ids=["u1"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        catalog_event({"notificationId": "n1"}, user_ids=["u1"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a payload of the event catalog"):
        catalog_event(Payload(), user_ids=["u1"])
    forged = NotificationNew.model_construct(title="no id")  # skips validation
    with pytest.raises(InvalidMessage) as caught:
        catalog_event(forged, user_ids=["u1"])
    assert "payload_schema" == caught.value.reason


SNIPPET = """\
from fanout.catalog import ChatMessage, NotificationNew
from fanout.publish import Publisher

def publish(p: Publisher) -> None:
    p.send_event(NotificationNew(notification_id="n1", title="hi"), user_ids=["u1"])
    p.send_event({"notificationId": "n1"}, user_ids=["u1"])  # E: not a payload model
    p.send_event(NotificationNew(notification_id=1), user_ids=["u1"])  # E: wrong field type
    p.send_event(NotificationNew(title="no id"), user_ids=["u1"])  # E: required field missing
    p.send_event(NotificationNew(notification_idd="n1"), user_ids=["u1"])  # E: misspelt field
    p.send_event(ChatMessage(conversation_id="c", message_id="m", sender_id="s"), users=["u1"])  # E: target
"""


@pytest.mark.parametrize("plugin", [True, False], ids=["pydantic-plugin", "plain-mypy"])
def test_mypy_refuses_a_wrong_payload(tmp_path: Path, plugin: bool) -> None:
    """mypy --strict flags each wrong payload line of a service's code, with or without pydantic's plugin,
    and passes the right one."""
    source = tmp_path / "service.py"
    source.write_text(SNIPPET)
    plugin_lines = "plugins = pydantic.mypy\n[pydantic-mypy]\ninit_typed = true\ninit_forbid_extra = true\n"
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = true\nignore_missing_imports = true\n"
        + (plugin_lines if plugin else "")
        + "[mypy-boto3.*,botocore.*,aiobotocore.*,aiohttp.*,pymongo.*,structlog.*,prometheus_client.*]\n"
        + "follow_imports = skip\n"  # what a service's own code cannot get wrong: faster, same verdicts
    )
    cache = ROOT / ".mypy_cache" / f"snippet-{plugin}"  # warm after the first run: seconds, not tens
    out, err, _ = mypy_api.run(["--config-file", str(config), "--cache-dir", str(cache), str(source)])
    flagged = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    expected = {n for n, line in enumerate(SNIPPET.splitlines(), 1) if "# E:" in line}
    assert 5 == len(expected)
    assert expected == flagged, out + err


def test_meta_extras_of_python_values_are_written_as_text_but_nan_is_refused() -> None:
    """A service's own meta key may hold a UUID or a datetime (written as text, as before the check for
    numbers JSON cannot carry); NaN or infinity there is refused like anywhere in the body."""
    import uuid
    from datetime import UTC, datetime

    request = uuid.uuid4()
    body = build_event(
        "notification.new",
        user_ids=["u1"],
        payload={"notificationId": "n1"},
        meta={"requestId": request, "at": datetime(2026, 1, 1, tzinfo=UTC)},
    )
    assert str(request) in body.to_json()
    with pytest.raises(InvalidMessage):
        build_event(
            "notification.new", user_ids=["u1"], payload={"notificationId": "n1"}, meta={"x": float("nan")}
        )


@pytest.mark.parametrize("field", ["user_ids", "topics", "exclude_connection_ids", "connection_ids"])
def test_one_string_for_a_list_is_refused_not_split_into_characters(field: str) -> None:
    """A target list given as one string ("u42") is refused, never sent to users "u", "4" and "2"."""
    audience = {"user_ids": ["u1"], field: "u42"} if field == "exclude_connection_ids" else {field: "u42"}
    with pytest.raises(InvalidMessage) as caught:
        build_event("notification.new", payload={"notificationId": "n1"}, **audience)  # type: ignore[arg-type]
    assert caught.value.reason == "schema"
    assert "not one string" in str(caught.value)
