"""The lifecycle's socket-health metrics as the Lambda prints them: EMF lines on stdout, one per invocation."""

from __future__ import annotations

import gc
import json
import socketserver
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from fanout.lifecycle import aws
from fanout.lifecycle.reconnects import COLLECTION, WINDOW_S
from fanout.tokens import sign
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import KEY, reset

Call = Any


def _emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF documents printed since the last read (log lines, if any, are not EMF)."""
    docs = []
    for line in capsys.readouterr().out.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            docs.append(doc)
    return docs


def _metrics(doc: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], float]:
    """(metric, dimension names) -> value, as CloudWatch extracts them from one document."""
    out = {}
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        assert "Fanout" == directive["Namespace"]
        for metric in directive["Metrics"]:
            assert "Count" == metric["Unit"]
            for dims in directive["Dimensions"]:
                out[(metric["Name"], tuple(doc[d] for d in dims))] = doc[metric["Name"]]
    return out


def test_connect_and_disconnect_are_one_line_each(
    handler: tuple[Call, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A $connect prints Connects 1 and a $disconnect Disconnects 1, one EMF line per invocation."""
    call, _ = handler
    capsys.readouterr()
    assert 200 == call(events.connect("h1", token=sign("hu1", KEY)), None)["statusCode"]
    [doc] = _emf(capsys)
    assert {("Connects", ()): 1} == _metrics(doc)
    assert 200 == call(events.disconnect("h1"), None)["statusCode"]
    [doc] = _emf(capsys)
    assert {("Disconnects", ()): 1} == _metrics(doc)


def test_a_401_counts_as_unauthorized_not_as_a_connect(
    handler: tuple[Call, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A $connect refused for its token prints ConnectsUnauthorized 1 and no Connects."""
    call, _ = handler
    capsys.readouterr()
    garbage = "not-a-jwt"
    assert 401 == call(events.connect("h2", token=garbage), None)["statusCode"]
    [doc] = _emf(capsys)
    assert {("ConnectsUnauthorized", ()): 1} == _metrics(doc)


def test_a_429_counts_as_refused_not_as_a_connect(
    handler: tuple[Call, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A $connect past the user's limit of live connections prints ConnectsRefused 1 and no Connects."""
    monkeypatch.setenv("FANOUT_MAX_CONNECTIONS_PER_USER", "1")
    call, _ = handler
    token = sign("hu9", KEY)
    assert 200 == call(events.connect("h9a", token=token), None)["statusCode"]
    capsys.readouterr()
    assert 429 == call(events.connect("h9b", token=token), None)["statusCode"]
    [doc] = _emf(capsys)
    assert {("ConnectsRefused", ()): 1} == _metrics(doc)


def test_a_frame_prints_nothing(handler: tuple[Call, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """An invocation that counted nothing (a ping, a client's bad frame) prints no EMF line."""
    call, _ = handler
    call(events.connect("h3", token=sign("hu3", KEY)), None)
    capsys.readouterr()
    call(events.message("h3", '{"action":"ping"}', route="ping"), None)
    call(events.message("h3", "not json"), None)
    assert [] == _emf(capsys)


def test_reconnect_within_the_window_counts_and_after_it_does_not(
    handler: tuple[Call, MongoClient[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A user connecting again right after a disconnect is a reconnect; past the window it is a new session."""
    call, mongo = handler
    token = sign("hu4", KEY)
    call(events.connect("h4a", token=token), None)
    call(events.disconnect("h4a"), None)
    capsys.readouterr()
    call(events.connect("h4b", token=token), None)
    [doc] = _emf(capsys)
    assert {("Connects", ()): 1, ("Reconnects", ()): 1} == _metrics(doc)
    # A user who never disconnected makes no reconnect; a disconnect older than the window neither.
    call(events.disconnect("h4b"), None)
    db = mongo[aws._lifecycle.services.settings.mongo_db]  # type: ignore[union-attr]
    long_ago = datetime.now(UTC) - timedelta(seconds=WINDOW_S + 1)
    assert (
        1 == db[COLLECTION].update_one({"_id": "hu4"}, {"$set": {"disconnectedAt": long_ago}}).matched_count
    )
    call(events.connect("h4c", token=sign("hu5", KEY)), None)
    capsys.readouterr()
    call(events.connect("h4d", token=token), None)
    [doc] = _emf(capsys)
    assert {("Connects", ()): 1} == _metrics(doc)


class _HangUp(socketserver.BaseRequestHandler):
    def handle(self) -> None:  # accept, then close at once: a MongoDB that crashes on every connection
        pass


@pytest.fixture
def no_mongo(handler: tuple[Call, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Call]:
    """The handler with a MongoDB that hangs up on every connection, failing calls within 300 ms."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HangUp)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FANOUT_MONGO_URI", f"mongodb://127.0.0.1:{server.server_address[1]}/?tls=true")
    monkeypatch.setenv("FANOUT_MONGO_TIMEOUT_MS", "300")
    yield handler[0]
    reset()  # the handler's client goes before its server does
    # pymongo's monitor, cancelled by close() while it reconnects, leaves its new socket to the garbage
    # collector (pool_shared._async_create_connection closes it on OSError only): collect it here, quietly,
    # rather than let a ResourceWarning of pymongo's land in whichever test runs next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize(
    ("event", "route"),
    [
        (events.connect("h5", token=sign("hu6", KEY)), "$connect"),
        (events.disconnect("h5"), "$disconnect"),
        (events.message("h5", '{"action":"ping","id":"f9"}', route="ping"), "ping"),
        (events.message("h5", '{"action":"subscribe","topics":["event:1"]}'), "$default"),
    ],
    ids=["$connect", "$disconnect", "ping", "$default"],
)
def test_a_failing_handler_is_a_500_and_a_route_error(
    no_mongo: Call, capsys: pytest.CaptureFixture[str], event: dict[str, Any], route: str
) -> None:
    """A handler that raises is answered 500 (a frame also with system.error) and counted by its route."""
    capsys.readouterr()
    answer = no_mongo(event, None)
    assert 500 == answer["statusCode"]
    if route not in ("$connect", "$disconnect"):
        frame = json.loads(answer["body"])
        assert ("system.error", "internal_error") == (frame["type"], frame["payload"]["code"])
        assert frame.get("replyTo") in (None, "f9")
    [doc] = _emf(capsys)
    assert {("RouteErrors", (route,)): 1, ("RouteErrors", ()): 1} == _metrics(doc)


def test_a_container_that_cannot_start_answers_500_and_starts_later(
    handler: tuple[Call, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without its key the handler answers 500 and counts a route error; once the key is there it works."""
    call, _ = handler
    monkeypatch.delenv("FANOUT_JWT_SECRET")
    capsys.readouterr()
    assert 500 == call(events.connect("h6", token=sign("hu7", KEY)), None)["statusCode"]
    [doc] = _emf(capsys)
    assert {("RouteErrors", ("$connect",)): 1, ("RouteErrors", ()): 1} == _metrics(doc)
    monkeypatch.setenv("FANOUT_JWT_SECRET", KEY)
    assert 200 == call(events.connect("h6", token=sign("hu7", KEY)), None)["statusCode"]
    [doc] = _emf(capsys)
    assert {("Connects", ()): 1} == _metrics(doc)


def test_a_start_refused_for_a_bad_setting_is_logged_as_json_without_the_values(
    handler: tuple[Call, Any], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A container whose key is too short logs one JSON error naming the setting and its reason, and no
    setting's value: neither the key nor the MongoDB URI reaches the log."""
    call, _ = handler
    monkeypatch.delenv("FANOUT_CLOUDWATCH_EMF")  # the key is then the last setting given
    monkeypatch.setenv("FANOUT_JWT_SECRET", "tail-of-a-short-secret")
    monkeypatch.setenv("FANOUT_MONGO_URI", "mongodb://admin:tail-of-a-password@127.0.0.1:1/?tls=true")
    capfd.readouterr()
    assert 500 == call(events.connect("h8", token=sign("hu9", KEY)), None)["statusCode"]
    out, err = capfd.readouterr()
    assert "tail-of-a" not in out + err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "lifecycle_start_failed"]
    assert ("error", "ConfigError") == (line["level"], line["error"])
    assert "FANOUT_JWT_SECRET must be at least 32 bytes" in line["exception"]


def test_no_emf_unless_asked(
    handler: tuple[Call, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With FANOUT_CLOUDWATCH_EMF unset the handler prints no EMF line."""
    call, _ = handler
    monkeypatch.delenv("FANOUT_CLOUDWATCH_EMF")
    capsys.readouterr()
    call(events.connect("h7", token=sign("hu8", KEY)), None)
    assert [] == _emf(capsys)
