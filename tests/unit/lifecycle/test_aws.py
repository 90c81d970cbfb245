"""The Lambda entry point fed with the events API Gateway really sends, against a real MongoDB (SecantusDB)."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
from typing import Any

import boto3
import pytest

from fanout.config import DEV_JWT_SECRET, Settings
from fanout.errors import ConfigError
from fanout.inbound import InboundQueue
from fanout.lifecycle import aws
from fanout.tickets import mint
from fanout.tokens import sign
from tests.conftest import Server, dev_settings
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import KEY


def _frame(answer: dict[str, Any]) -> dict[str, Any]:
    assert 200 == answer["statusCode"]
    return dict(json.loads(answer["body"]))


def test_connect_stores_the_user_of_the_token_and_disconnect_removes_it(handler: Any) -> None:
    """$connect with a valid token stores the record with the token's user; $disconnect deletes it."""
    call, mongo = handler
    assert 200 == call(events.connect("c1", token=sign("u1", KEY)), None)["statusCode"]
    record = mongo[aws._lifecycle.services.settings.mongo_db].websocketconnections.find_one(
        {"connectionId": "c1"}
    )
    assert record is not None
    assert ("u1", events.DOMAIN, "production") == (record["userId"], record["domainName"], record["stage"])
    assert 200 == call(events.disconnect("c1"), None)["statusCode"]
    assert mongo[aws._lifecycle.services.settings.mongo_db].websocketconnections.count_documents({}) == 0


def test_connect_accepts_a_bearer_header(handler: Any) -> None:
    """The token may come as `Authorization: Bearer` instead of the query string."""
    call, _ = handler
    assert 200 == call(events.connect("c2", bearer=sign("u2", KEY)), None)["statusCode"]


@pytest.mark.parametrize(
    "token",
    [None, "", "not-a-jwt", sign("u1", "x" * 40), sign("u1", KEY, ttl_s=-60), sign("u1", DEV_JWT_SECRET)],
    ids=["missing", "empty", "garbage", "other key", "expired", "development key"],
)
def test_connect_without_a_valid_token_is_401(handler: Any, token: str | None) -> None:
    """A missing, garbage, forged, expired (past the leeway) or development-signed token is refused with 401."""
    call, _ = handler
    assert 401 == call(events.connect("c3", token=token), None)["statusCode"]


@pytest.mark.parametrize("where", ["token", "bearer"])
def test_a_token_holding_a_lone_surrogate_is_401(handler: Any, where: str) -> None:
    """Bytes of a header or query that are not UTF-8 can reach the handler as lone surrogates (aiohttp,
    under the local emulator, decodes header bytes so): such a token is refused like any malformed one,
    never answered 500."""
    call, _ = handler
    for token in (sign("u1", KEY) + "\udcff", "\ud800"):
        assert 401 == call(events.connect("c3", **{where: token}), None)["statusCode"]


def test_frames_are_answered_on_their_route_and_on_default(handler: Any) -> None:
    """A ping on its own route and on $default is answered with ping.pong echoing the frame's id."""
    call, _ = handler
    call(events.connect("c4", token=sign("u4", KEY)), None)
    on_route = _frame(call(events.message("c4", '{"action":"ping","id":"f1"}', route="ping"), None))
    assert ("ping.pong", "f1") == (on_route["type"], on_route["replyTo"])
    on_default = _frame(call(events.message("c4", '{"action":"ping"}'), None))
    assert "ping.pong" == on_default["type"]


MALFORMED_FRAMES = [
    ("no body", None, "bad_frame"),
    ("empty body", "", "bad_frame"),
    ("not json", "hello", "bad_frame"),
    ("a json array", "[1,2]", "bad_frame"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "bad_frame"),
    ("nan", '{"action":"ping","x":NaN}', "bad_frame"),
    # A lone surrogate as a character, not an escape: no UTF-8 text holds one, and the parser refuses it.
    ("a lone surrogate", '{"action":"ping","id":"f1","x":"\ud800"}', "bad_frame"),
    # About 40 KB of UTF-8 in 20,006 characters: the bound is 32 KiB of bytes (protocol section 8).
    ("over 32 KiB of UTF-8", '{"action":"ping","pad":"' + "é" * 20_000 + '"}', "bad_frame"),
    ("no action", '{"hello":1}', "unknown_action"),
    ("action not a string", '{"action":["ping"]}', "unknown_action"),
    ("unknown action", '{"action":"chat.delete_everything"}', "unknown_action"),
    ("topics not a list", '{"action":"subscribe","topics":"event:1"}', "bad_topics"),
    ("topic of no kind", '{"action":"subscribe","topics":["lobby"]}', "bad_topics"),
    ("another user's topic", '{"action":"subscribe","topics":["user:someone-else"]}', "forbidden_topic"),
    ("a gated kind", '{"action":"subscribe","topics":["organization:7"]}', "forbidden_topic"),
]


@pytest.mark.parametrize(("case", "body", "code"), MALFORMED_FRAMES, ids=[m[0] for m in MALFORMED_FRAMES])
def test_every_unusable_frame_gets_a_system_error(
    handler: Any, case: str, body: str | None, code: str
) -> None:
    """Frames the lifecycle cannot use are answered with system.error and a code, never an exception."""
    call, _ = handler
    call(events.connect("c5", token=sign("u5", KEY)), None)
    answer = _frame(call(events.message("c5", body), None))
    assert ("system.error", code) == (answer["type"], answer["payload"]["code"])


def test_a_frame_from_an_unknown_connection_is_refused(handler: Any) -> None:
    """A frame whose connection has no record gets system.error unknown_connection."""
    call, _ = handler
    answer = _frame(call(events.message("ghost", '{"action":"ping"}'), None))
    assert "unknown_connection" == answer["payload"]["code"]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"requestContext": None},
        {"requestContext": {"routeKey": "$connect"}},
        {"requestContext": {"connectionId": 7}},
    ],
    ids=["empty", "context null", "no connection id", "connection id not a string"],
)
def test_malformed_events_are_a_400(handler: Any, event: dict[str, Any]) -> None:
    """An event without a usable requestContext is answered 400, not with an exception."""
    call, _ = handler
    assert 400 == call(event, None)["statusCode"]


def test_a_deployed_handler_refuses_development_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside Lambda, FANOUT_ENV=dev (and so the development key) is refused, whatever else is set."""
    monkeypatch.setenv("FANOUT_ENV", "dev")
    with pytest.raises(ConfigError, match="refuses FANOUT_ENV=dev"):
        aws.deployed_settings({"AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle"})


def test_a_container_names_a_misspelled_variable_once(
    handler: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A container started with a misspelled setting logs one JSON warning naming it and the setting it
    probably means, without its value, and still answers; later invocations do not repeat it."""
    call, _ = handler
    monkeypatch.setenv("FANOUT_JWT_AUDEINCE", "tail-of-an-audience")
    capfd.readouterr()
    for connection in ("w1", "w2"):
        assert 200 == call(events.connect(connection, token=sign("u1", KEY)), None)["statusCode"]
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "unknown_variables"]
    assert ("warning", ["FANOUT_JWT_AUDEINCE (did you mean FANOUT_JWT_AUDIENCE?)"]) == (
        line["level"],
        line["variables"],
    )
    assert "tail-of-an" not in err


def test_a_deployed_handler_needs_a_key(monkeypatch: pytest.MonkeyPatch, mongo_tls_server: Server) -> None:
    """In production without FANOUT_JWT_SECRET or its ARN the handler refuses to start."""
    monkeypatch.setenv("FANOUT_ENV", "production")
    monkeypatch.setenv("FANOUT_MONGO_URI", mongo_tls_server.url)
    with pytest.raises(ConfigError, match="FANOUT_JWT_SECRET"):
        aws.deployed_settings({"AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle"})


def test_a_deployed_handler_refuses_a_plain_mongodb(
    monkeypatch: pytest.MonkeyPatch, mongo_server: Server
) -> None:
    """The local stack's MongoDB, plain TCP to a loopback port, cannot take effect in production: the
    handler refuses to start, saying why, without the URI (a URI may carry a password)."""
    monkeypatch.setenv("FANOUT_ENV", "production")
    monkeypatch.setenv("FANOUT_JWT_SECRET", KEY)
    monkeypatch.setenv("FANOUT_MONGO_URI", mongo_server.url.replace("://", "://fanout:hunter2secret@"))
    with pytest.raises(ConfigError, match="FANOUT_MONGO_URI: must use TLS") as refused:
        aws.deployed_settings({"AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle"})
    assert "hunter2secret" not in str(refused.value) and "127.0.0.1" not in str(refused.value)


@pytest.mark.parametrize(
    ("stored", "refused"),
    [("mongodb://db:1/?tls=true", None), ("mongodb://fanout:tail-of-a-password@db:1", "must use TLS")],
    ids=["tls", "plain"],
)
def test_the_key_can_come_from_secrets_manager(
    monkeypatch: pytest.MonkeyPatch, moto_server: Server, stored: str, refused: str | None
) -> None:
    """FANOUT_JWT_SECRET_ARN names a Secrets Manager secret whose value becomes the key; the MongoDB URI
    read from a secret is held to production's rule as one set directly is (TLS), and never quoted."""
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1")
    arn = sm.create_secret(Name=f"jwt-{secrets.token_hex(4)}", SecretString=KEY)["ARN"]
    uri = sm.create_secret(Name=f"mongo-{secrets.token_hex(4)}", SecretString=json.dumps({"uri": stored}))
    for key, value in {
        "FANOUT_ENV": "production",
        "FANOUT_JWT_SECRET_ARN": arn,
        "FANOUT_MONGO_SECRET_ARN": uri["ARN"],
        "FANOUT_MONGO_SECRET_FIELD": "uri",
    }.items():
        monkeypatch.setenv(key, value)
    # moto's client is handed in: production settings cannot name a local endpoint
    deployed = functools.partial(
        aws.deployed_settings, {"AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle"}, secrets_client=sm
    )
    if refused is None:
        settings = deployed()
        assert KEY == settings.jwt_key()
        assert stored == settings.mongo()
    else:
        with pytest.raises(ConfigError, match=f"FANOUT_MONGO_URI: {refused}") as caught:
            deployed()
        assert "tail-of-a" not in str(caught.value)
    sm.close()


def test_a_development_key_stored_as_a_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, moto_server: Server
) -> None:
    """Even from Secrets Manager, the development key cannot become a production key."""
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1")
    arn = sm.create_secret(Name=f"jwt-{secrets.token_hex(4)}", SecretString=DEV_JWT_SECRET)["ARN"]
    for key, value in {
        "FANOUT_ENV": "production",
        "FANOUT_JWT_SECRET_ARN": arn,
        "FANOUT_MONGO_URI": "mongodb://db:1/?tls=true",
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="development key"):
        aws.deployed_settings({"AWS_LAMBDA_FUNCTION_NAME": "fanout-lifecycle"}, secrets_client=sm)
    sm.close()


def test_no_event_loop_is_left_running() -> None:
    """The handler runs its own loop: calling it from a test thread without one is the Lambda situation."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_hello_through_the_lambda_answers_the_connection_id(handler: Any) -> None:
    """hello on its own route (as API Gateway selects it) answers system.connected with the id."""
    call, _ = handler
    call(events.connect("c6", token=sign("u6", KEY)), None)
    answer = _frame(
        call(events.message("c6", '{"action":"hello","id":"h1","protocols":[1]}', route="hello"), None)
    )
    assert ("system.connected", "h1") == (answer["type"], answer["replyTo"])
    assert ("c6", "u6", 1) == (
        answer["payload"]["connectionId"],
        answer["payload"]["userId"],
        answer["payload"]["protocol"],
    )


def test_a_ticket_connects_through_the_lambda_once(handler: Any) -> None:
    """A ticket minted by a domain service's function connects once through the deployed handler."""
    call, _ = handler
    ticket = mint("u7", settings=Settings())
    assert 200 == call(events.connect("c7", ticket=ticket), None)["statusCode"]
    assert 401 == call(events.connect("c8", ticket=ticket), None)["statusCode"]


def test_chat_send_through_the_lambda_reaches_the_inbound_queue(handler: Any, moto_server: Server) -> None:
    """chat.send on its own route goes to the inbound queue with the connection's user."""
    sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"inbound-{secrets.token_hex(4)}")["QueueUrl"]
    # The container starts with an inbound queue on moto: production settings cannot name a local endpoint.
    aws._started(inbound=InboundQueue(dev_settings(moto=moto_server, inbound_queue_url=url)))
    call, _ = handler
    call(events.connect("c9", token=sign("u9", KEY)), None)
    ack = _frame(
        call(
            events.message("c9", '{"action":"chat.send","userId":"u1","text":"hi"}', route="chat.send"), None
        )
    )
    assert "system.accepted" == ack["type"]
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    body = json.loads(message["Body"])
    assert ("u9", "c9", ack["payload"]["requestId"]) == (
        body["userId"],
        body["connectionId"],
        body["requestId"],
    )
    sqs.close()
