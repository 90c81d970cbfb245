"""The command line as a user types it: clear errors with exit code 2, ids on success."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import jwt
import pytest

from fanout.catalog import KNOWN_TYPES
from fanout.tokens import verify
from tests.conftest import Stack, free_port, stack_env, start_stack, stop_stack
from tests.helpers import connect


def _fanout(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", *args], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "Notification", "--user", "u1"], "invalid event (schema)"),
        (["publish", "billing.paid", "--user", "u1"], "invalid event (unknown_domain)"),
        (["publish", "notification.new"], "invalid event (empty_target)"),
        (["publish", "notification.new", "--user", "u1", "--payload", "{not json"], "--payload is not JSON"),
        (
            ["publish", "notification.new", "--user", "u1", "--payload", "[1]"],
            "--payload must be a JSON object",
        ),
        (
            ["publish", "notification.new", "--user", "u1", "--payload", '{"a":' * 5000 + "1" + "}" * 5000],
            "--payload is nested too deeply",
        ),
        (["publish", "notification.new", "--user", "u1", "--user", "u1"], "invalid event (duplicate_target)"),
        (
            ["publish", "notification.new", "--via", "sns", "--payload", '{"notificationId":"n1"}']
            # a body of about 300 KB in 1,200 ids of 250 characters: argparse is quadratic in arguments
            + [a for i in range(1_200) for a in ("--user", f"user-{i:07d}".ljust(250, "x"))],
            "invalid event (too_large): body of",
        ),
        (
            ["publish", "notification.new", "--user", "u1", "--payload", '{"title":"no id"}'],
            "invalid event (payload_schema): notification.new@1: payload.notificationId: Field required",
        ),
    ],
)
def test_bad_publish_input_exits_2_with_a_clear_message(stack: Stack, args: list[str], message: str) -> None:
    """A bad type, target or payload, or a body over SNS's 256 KiB through SNS, is refused before
    anything is sent, with no traceback."""
    result = _fanout(stack.env, *args)
    assert 2 == result.returncode
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_prints_the_event_id(stack: Stack) -> None:
    """A good publish prints one evt_ id and exits 0, through SQS and through SNS."""
    for via in ("sqs", "sns"):
        result = _fanout(stack.env, "publish", "notification.new", "--user", "cli-user", "--via", via,
                         "--payload", '{"notificationId":"n1","title":"hi"}')  # fmt: skip
        assert 0 == result.returncode, result.stderr
        assert result.stdout.strip().startswith("evt_")


@pytest.mark.parametrize("ttl", ["61", "0", "-5"])
def test_a_ticket_lifetime_outside_1_to_60_seconds_exits_2(stack: Stack, ttl: str) -> None:
    """`fanout ticket` refuses a lifetime a ticket may not have, with a clear message and nothing minted."""
    result = _fanout(stack.env, "ticket", "u1", "--ttl", ttl)
    assert (2, "") == (result.returncode, result.stdout)
    assert "a ticket lives 1 to 60 seconds" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--ttl", "60"], "a token's user id is 1 to 256 characters"),
        (["u" * 257], "a token's user id is 1 to 256 characters"),
        (["u1", "--ttl", "0"], "a token lives 1 to 86400 seconds (--ttl)"),
        (["u1", "--ttl", "-5"], "a token lives 1 to 86400 seconds (--ttl)"),
        (["u1", "--ttl", "86401"], "a token lives 1 to 86400 seconds (--ttl)"),
        (["u1", "--ttl", "9" * 30], "a token lives 1 to 86400 seconds (--ttl)"),
    ],
)
def test_a_token_connect_would_refuse_is_not_printed(args: list[str], message: str) -> None:
    """`fanout token` refuses a user id or lifetime that $connect would refuse (401), or a lifetime over a
    day, with one line and exit code 2, and prints no token."""
    result = _fanout({"FANOUT_ENV": "dev"}, "token", *args)
    assert (2, "") == (result.returncode, result.stdout)
    assert f"fanout: error: {message}\n" == result.stderr


def test_a_token_lives_a_day_at_most() -> None:
    """`fanout token --ttl 86400` signs a token valid for exactly a day, and --help names the bound."""
    result = _fanout({"FANOUT_ENV": "dev"}, "token", "u1", "--ttl", "86400")
    assert 0 == result.returncode, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert 86400 == claims["exp"] - claims["iat"]
    assert "1 to 86400 (default 3600)" in _fanout({"COLUMNS": "200"}, "token", "--help").stdout


def test_token_and_schema(stack: Stack) -> None:
    """`fanout token` signs for the user; `fanout schema` prints the wire schemas and the whole catalog."""
    token = _fanout(stack.env, "token", "u42").stdout.strip()
    assert "u42" == verify(token, stack.settings.jwt_key())
    schemas = json.loads(_fanout(stack.env, "schema").stdout)
    assert {"$schema", "queueBody", "clientEnvelope", "events"} == set(schemas)
    assert KNOWN_TYPES == {e["type"] for e in schemas["events"]}


@pytest.mark.parametrize("where", ["missing/schema.json", "."], ids=["no such directory", "a directory"])
def test_schema_out_that_cannot_be_written_is_a_clear_error(tmp_path: Path, where: str) -> None:
    """`fanout schema --out PATH` into a directory that does not exist, or onto a directory, names the path
    and the reason and exits 2, without a traceback."""
    result = _fanout({}, "schema", "--out", str(tmp_path / where))
    assert 2 == result.returncode
    assert f"cannot write --out {tmp_path / where}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_typescript_without_node_says_what_is_missing(tmp_path: Path) -> None:
    """Without node and npm on PATH, `fanout schema --typescript` names them and exits 1, no traceback."""
    result = _fanout({"PATH": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}, "schema", "--typescript")
    assert 1 == result.returncode
    assert "needs Node.js 20+ and npm on PATH (node and npm not found)" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_reports_a_taken_port_without_a_traceback() -> None:
    """`fanout dev` with its SQS port taken says which port and which variable, and exits 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "FANOUT_GATEWAY_PORT": str(free_port()),
               "FANOUT_METRICS_PORT": str(free_port()), "FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}"}  # fmt: skip
        result = _fanout(env, "dev")
    assert 2 == result.returncode
    assert f"port {port}" in result.stderr
    assert "FANOUT_AWS_ENDPOINT_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args", [["worker", "--processes", "1"], ["worker", "--processes", "2"], ["relay"]], ids=str
)
def test_a_taken_metrics_port_is_a_clear_error(closed_port: int, args: list[str]) -> None:
    """A worker (one process or a pool) or a relay whose FANOUT_METRICS_PORT is taken, as by a worker and
    a relay on one host, names the address and its variables and exits 2, without a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}",
               "FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{closed_port}", "FANOUT_MONGO_TIMEOUT_MS": "300",
               "FANOUT_QUEUE_URL": f"http://127.0.0.1:{closed_port}/000000000000/q",
               "FANOUT_METRICS_PORT": str(port)}  # fmt: skip
        result = _fanout(env, *args)
    assert 2 == result.returncode
    assert f"cannot listen on 127.0.0.1:{port} (FANOUT_METRICS_HOST, FANOUT_METRICS_PORT)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("count", ["0", "-1"])
def test_a_worker_of_no_processes_is_refused(count: str) -> None:
    """`fanout worker --processes 0` is refused as -1 is, rather than taken for the default (the CPUs the
    machine reports, a Fargate host's rather than the task's)."""
    result = _fanout({}, "worker", "--processes", count)
    assert 2 == result.returncode
    assert "--processes must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_worker_without_settings_is_a_config_error() -> None:
    """With FANOUT_ENV=production and nothing else, the worker names every missing setting at once."""
    result = _fanout({"FANOUT_ENV": "production"}, "worker", "--processes", "1")
    assert 2 == result.returncode
    assert "FANOUT_QUEUE_URL" in result.stderr
    assert "FANOUT_MONGO_URI" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "url", "reason"),
    [
        ("FANOUT_AWS_ENDPOINT_URL", "http://fanout-local:tail-of-a-key@127.0.0.1:9324", "must carry no"),
        ("FANOUT_AWS_ENDPOINT_URL", "http://127.0.0.1:9324/tail-of-a-path", "must be https"),
        ("FANOUT_AWS_ENDPOINT_URL", "https://localhost:4566/tail-of-a-path", "must name a public host"),
        ("FANOUT_JWKS_URL", "https://127.0.0.1:8443/jwks?key=tail-of-a-key", "must name a public host"),
        ("FANOUT_MONGO_URI", "mongodb://fanout:tail-of-a-key@127.0.0.1:27018", "must use TLS"),
    ],
)
def test_production_refuses_a_local_endpoint_without_its_value(variable: str, url: str, reason: str) -> None:
    """A production worker given the local stack's SQS endpoint or MongoDB, or a loopback JWKS, exits 2
    before it connects anywhere, naming the variable and the reason, and not the URL."""
    env = {"FANOUT_ENV": "production", "FANOUT_JWT_ISSUER": "https://login.example.test/",
           "FANOUT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
           "FANOUT_MONGO_URI": "mongodb://db.example:1/?tls=true", variable: url}  # fmt: skip
    result = _fanout(env, "worker", "--processes", "1")
    assert 2 == result.returncode
    assert f"bad setting {variable}: {reason}" in result.stderr
    assert "tail-of-a" not in result.stderr and "127.0.0.1" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FANOUT_ENV": "production", "FANOUT_JWT_SECRET": "tail-of-a-short-secret"}, "at least 32 bytes"),
        (
            {"FANOUT_JWKS_URL": "https://login.example.test/jwks?k=tail-of-a-short-secret"},
            "FANOUT_JWT_ISSUER",
        ),
        ({"FANOUT_LOG_LEVEL": "LOUD"}, "FANOUT_LOG_LEVEL"),
    ],
    ids=["short key", "jwks without issuer", "unknown log level"],
)
def test_a_setting_refused_as_a_whole_is_a_clear_error_without_its_values(
    env: dict[str, str], message: str
) -> None:
    """A settings error that no single variable carries (a short key, a JWKS without issuer) or an unknown
    log level exits 2 with the reason, no traceback, and none of the values, which may be secrets."""
    result = _fanout(
        {**env, "FANOUT_MONGO_URI": "mongodb://admin:tail-of-a-password@db.example:1/?tls=true"}, "schema"
    )
    assert 2 == result.returncode
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "tail-of-a" not in result.stderr


def _unknown_variables_lines(stderr: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "unknown_variables"]


def test_misspelled_variables_are_named_in_one_warning_without_their_values() -> None:
    """Every FANOUT_* variable that is no setting is named in one warning line, with the setting it
    probably means, and never its value; variables of the bench, tests and tools are not."""
    env = {"FANOUT_LOG_FORMAT": "json", "FANOUT_QUEUE_ULR": "https://tail-of-a-value.example/q",
           "FANOUT_MAX_INFLIGHT": "7", "FANOUT_NOT_EVEN_CLOSE": "tail-of-a-value",
           "FANOUT_TS_REGION": "eu-west-1", "FANOUT_DRIVER": "{}", "FANOUT_CALLS_OUT": "calls.txt"}  # fmt: skip
    result = _fanout(env, "schema")
    assert 0 == result.returncode, result.stderr
    [line] = _unknown_variables_lines(result.stderr)
    assert "warning" == line["level"]
    assert [
        "FANOUT_MAX_INFLIGHT (did you mean FANOUT_MAX_POSTS_IN_FLIGHT?)",
        "FANOUT_NOT_EVEN_CLOSE",
        "FANOUT_QUEUE_ULR (did you mean FANOUT_QUEUE_URL?)",
    ] == line["variables"]
    assert "tail-of-a" not in result.stderr


def test_the_production_worker_names_a_misspelled_variable_before_it_refuses() -> None:
    """A production worker whose MongoDB URI is misspelled says which setting it probably meant, beside
    the error naming the missing one."""
    env = {"FANOUT_ENV": "production", "FANOUT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
           "FANOUT_MONGO_URL": "mongodb+srv://fanout:tail-of-a-password@db.example/"}  # fmt: skip
    result = _fanout(env, "worker", "--processes", "1")
    assert 2 == result.returncode
    [line] = _unknown_variables_lines(result.stderr)
    assert ["FANOUT_MONGO_URL (did you mean FANOUT_MONGO_URI?)"] == line["variables"]
    assert "fanout: error: FANOUT_ENV=production needs FANOUT_MONGO_URI" in result.stderr
    assert "tail-of-a" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["FANOUT_EVN", "FANOUT_ENVIRONMENT"])
def test_a_misspelled_env_without_fanout_env_is_refused(name: str) -> None:
    """Without FANOUT_ENV a process runs as dev: with a misspelling of it set, which mode was meant is
    unknown, so the command exits 2 with one line instead of running against the local stack."""
    result = _fanout({name: "production"}, "flags", "list")
    assert (2, "") == (result.returncode, result.stdout)
    assert f"fanout: error: {name} is not a setting (FANOUT_ENV?)" in result.stderr
    assert "Traceback" not in result.stderr and 1 == result.stderr.count("\n")
    beside = _fanout({name: "production", "FANOUT_ENV": "dev", "FANOUT_LOG_FORMAT": "json"}, "schema")
    assert 0 == beside.returncode  # FANOUT_ENV given: the misspelling is only named
    assert 0 == _fanout({name: "1", "FANOUT_LOG_FORMAT": "json"}, "schema").returncode  # no mode: named only
    [line] = _unknown_variables_lines(beside.stderr)
    assert [f"{name} (did you mean FANOUT_ENV?)"] == line["variables"]


def test_flags_refuse_a_bad_key_and_an_absent_mongodb_clearly(closed_port: int) -> None:
    """`fanout flags` names a key outside the known domains (exit 2) and a MongoDB that does not answer (exit 1)."""
    env = {"FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{closed_port}", "FANOUT_MONGO_TIMEOUT_MS": "300"}
    bad = _fanout(env, "flags", "set", "billing", "off")
    assert 2 == bad.returncode
    assert "'billing' is not in a known domain" in bad.stderr
    gone = _fanout(env, "flags", "list")
    assert 1 == gone.returncode
    assert "MongoDB did not answer" in gone.stderr
    assert "Traceback" not in bad.stderr + gone.stderr


@pytest.mark.parametrize("args", [["flags", "list"], ["worker", "--processes", "1"]], ids=str)
def test_a_mongodb_uri_pymongo_cannot_read_is_a_clear_error(closed_port: int, args: list[str]) -> None:
    """A MongoDB URI whose port is out of range (pymongo's ValueError) exits 2 naming the variable, without
    a traceback or the URI's password."""
    env = {"FANOUT_MONGO_URI": "mongodb://fanout:tail-of-a-password@mongo.example:99999/",
           "FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}", "FANOUT_METRICS_PORT": str(free_port())}  # fmt: skip
    result = _fanout(env, *args)
    assert 2 == result.returncode
    assert "bad setting FANOUT_MONGO_URI: pymongo cannot read it" in result.stderr
    assert "Traceback" not in result.stderr and "tail-of-a" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--ttl", "30"], "a ticket's user id is 1 to 256"),
        (["u1", "--ttl", "0"], "a ticket lives 1 to 60"),
    ],
)
def test_a_bad_ticket_is_refused_before_mongodb_is_asked(
    closed_port: int, args: list[str], message: str
) -> None:
    """`fanout ticket` names a bad user id or lifetime (exit 2) even when MongoDB does not answer, rather
    than waiting out its timeout and blaming MongoDB."""
    env = {"FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{closed_port}", "FANOUT_MONGO_TIMEOUT_MS": "300"}
    result = _fanout(env, "ticket", *args)
    assert 2 == result.returncode
    assert message in result.stderr
    assert "MongoDB" not in result.stderr and "Traceback" not in result.stderr


def test_gateway_without_mongodb_says_so_without_a_traceback(closed_port: int) -> None:
    """`fanout gateway` alone, with no MongoDB for its connection records, says so and exits 1, as `fanout
    flags` and `fanout ticket` do."""
    env = {"FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{closed_port}", "FANOUT_MONGO_TIMEOUT_MS": "300",
           "FANOUT_GATEWAY_PORT": str(free_port())}  # fmt: skip
    result = _fanout(env, "gateway")
    assert 1 == result.returncode
    assert "MongoDB did not answer (ServerSelectionTimeoutError)" in result.stderr
    assert "Traceback" not in result.stderr


async def test_ctrl_c_on_dev_with_clients_connected_stops_in_order_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Ctrl-C on `make run` (SIGINT, then its trap's SIGTERM) with sockets open: `fanout dev` stops once
    and cleanly, and the emulator's `$disconnect` for each socket (and its presence update) runs before
    MongoDB stops, so the log has both disconnects and no failure or traceback."""
    stack = start_stack(tmp_path, stack_env(), "--no-worker")
    try:
        async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
            for user in ("stop-a", "stop-b"):
                await connect(es, http, stack.ws_url, stack.settings, user)
            stack.process.send_signal(signal.SIGINT)  # the sockets are still open: the emulator closes them
            await asyncio.sleep(0.05)
            stack.process.send_signal(signal.SIGTERM)
            assert 0 == await asyncio.to_thread(stack.process.wait, 60)
            assert stack.process.stdout is not None
            assert "fanout dev: stopped" in stack.process.stdout.read()
    finally:
        stop_stack(stack)
    text = stack.log.read_text()
    assert "Traceback" not in text and "race condition" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line.get("event") == "gateway_stopped"]
    assert stopped and stopped[0]["counts"].get("disconnected") == 2
    failures = [line["event"] for line in lines if line.get("event") in ("presence_failed", "route_failed")]
    assert [] == failures
