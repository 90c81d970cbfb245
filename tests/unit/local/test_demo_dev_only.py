"""The demo page and its API (which mints a ticket for any user a request names) run only in dev."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from fanout.config import Settings
from fanout.errors import ConfigError
from fanout.local.demo.server import serve
from tests.conftest import free_port


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "AWS_"))}
    clean |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.run(
        [sys.executable, *argv], env=clean | env, capture_output=True, text=True, timeout=60, check=False
    )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_serve_refuses_outside_dev() -> None:
    """serve() raises before it reaches MongoDB, SQS or a port when FANOUT_ENV is production."""
    settings = Settings(
        env="production", mongo_uri="mongodb://127.0.0.1:1/?tls=true", queue_url="https://sqs.invalid/q"
    )
    with pytest.raises(ConfigError, match="local stack only"):
        await serve(settings)


def test_the_demo_server_exits_outside_dev_and_binds_nothing() -> None:
    """`python -m fanout.local.demo` with FANOUT_ENV=production and a full configuration exits 2 with the
    reason, and its port never opens."""
    port = free_port()
    result = _run(
        "-m",
        "fanout.local.demo",
        FANOUT_ENV="production",
        FANOUT_DEMO_PORT=str(port),
        FANOUT_MONGO_URI=f"mongodb://127.0.0.1:{free_port()}/?tls=true",
        FANOUT_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/000000000000/never-used",
    )
    assert 2 == result.returncode, result.stderr[-2000:]
    assert "the demo page is for the local stack only (FANOUT_ENV=dev, not production)" in result.stderr
    assert not _listening(port)


def test_the_demo_server_names_a_misspelled_variable() -> None:
    """`python -m fanout.local.demo` names a misspelled FANOUT_* variable (and the setting it probably
    means) in a warning before it starts, here before it refuses production."""
    result = _run(
        "-m",
        "fanout.local.demo",
        FANOUT_ENV="production",
        FANOUT_LOG_FORMAT="json",
        FANOUT_DEMO_PROT=str(free_port()),
        FANOUT_MONGO_URI=f"mongodb://127.0.0.1:{free_port()}/?tls=true",
        FANOUT_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/000000000000/never-used",
    )
    assert 2 == result.returncode, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "unknown_variables"]
    assert ["FANOUT_DEMO_PROT (did you mean FANOUT_DEMO_PORT?)"] == line["variables"]


def test_fanout_dev_refuses_outside_dev() -> None:
    """`fanout dev`, which starts the demo page, refuses FANOUT_ENV=production before starting anything."""
    port = free_port()
    result = _run("-m", "fanout", "dev", FANOUT_ENV="production", FANOUT_DEMO_PORT=str(port))
    assert 2 == result.returncode, result.stderr[-2000:]
    assert "`fanout dev` is for the local stack only (FANOUT_ENV=dev)" in result.stderr
    assert not _listening(port)
