"""The command line as a user types it: clear errors with exit code 2, ids on success."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from fanout.tokens import verify
from tests.conftest import Stack, free_port


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
        (["publish", "notification.new", "--user", "u1", "--user", "u1"], "invalid event (duplicate_target)"),
    ],
)
def test_bad_publish_input_exits_2_with_a_clear_message(stack: Stack, args: list[str], message: str) -> None:
    """A bad type, target or payload is refused before anything is sent, with no traceback."""
    result = _fanout(stack.env, *args)
    assert 2 == result.returncode
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_prints_the_event_id(stack: Stack) -> None:
    """A good publish prints one evt_ id and exits 0, through SQS and through SNS."""
    for via in ("sqs", "sns"):
        result = _fanout(stack.env, "publish", "notification.new", "--user", "cli-user", "--via", via,
                         "--payload", '{"title":"hi"}')  # fmt: skip
        assert 0 == result.returncode, result.stderr
        assert result.stdout.strip().startswith("evt_")


@pytest.mark.parametrize("ttl", ["61", "0", "-5"])
def test_a_ticket_lifetime_outside_1_to_60_seconds_exits_2(stack: Stack, ttl: str) -> None:
    """`fanout ticket` refuses a lifetime a ticket may not have, with a clear message and nothing minted."""
    result = _fanout(stack.env, "ticket", "u1", "--ttl", ttl)
    assert (2, "") == (result.returncode, result.stdout)
    assert "a ticket lives 1 to 60 seconds" in result.stderr and "Traceback" not in result.stderr


def test_token_and_schema(stack: Stack) -> None:
    """`fanout token` signs for the user; `fanout schema` prints both JSON Schemas."""
    token = _fanout(stack.env, "token", "u42").stdout.strip()
    assert "u42" == verify(token, stack.settings.jwt_key())
    schemas = json.loads(_fanout(stack.env, "schema").stdout)
    assert {"queueBody", "clientEnvelope"} == set(schemas)


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


def test_production_worker_without_settings_is_a_config_error() -> None:
    """With FANOUT_ENV=production and nothing else, the worker names every missing setting at once."""
    result = _fanout({"FANOUT_ENV": "production"}, "worker", "--processes", "1")
    assert 2 == result.returncode
    assert "FANOUT_QUEUE_URL" in result.stderr
    assert "FANOUT_MONGO_URI" in result.stderr
    assert "Traceback" not in result.stderr
