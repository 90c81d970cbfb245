"""The bundled lifecycle Lambda runs from its asset folder alone: a fresh interpreter with only the standard
library and the asset on its path imports the handler and answers API Gateway's events, against a real
SecantusDB."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name
from pymongo import MongoClient

from fanout import tokens
from fanout.config import DEV_JWT_SECRET
from fanout.local.stack import wait_stopped
from tests.conftest import _tcp_answers, die_with_parent, free_port
from tests.deploy.conftest import Synth
from tests.deploy.test_image import locked

# Run inside the fresh interpreter: the asset first on the path, then the handler named as Lambda names it.
RUNNER = r"""
import importlib, json, sys
asset = sys.argv[1]
sys.path.insert(0, asset)
module, _, name = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module), name)
import fanout, jwt, pydantic, pymongo
outside = [m.__name__ for m in (fanout, jwt, pydantic, pymongo) if not m.__file__.startswith(asset)]
events = json.load(sys.stdin)
print(json.dumps({"outside": outside, "path": sys.path, "responses": [handler(e, None) for e in events]}))
"""
DOMAIN = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SecantusDB on a free port, answering pings."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", str(tmp_path_factory.mktemp("mongo")), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )  # fmt: skip
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.admin.command("ping")
                    break
                except Exception:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.2)
        yield uri
    finally:
        process.terminate()
        wait_stopped(process, 30, wake=lambda: _tcp_answers(port))


def connect_event(connection_id: str, token: str | None) -> dict[str, Any]:
    """A $connect event as API Gateway sends it to a Lambda proxy integration."""
    query = {"token": token} if token else None
    return {
        "headers": {
            "Host": DOMAIN,
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
        "multiValueHeaders": {"Host": [DOMAIN], "Sec-WebSocket-Version": ["13"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "extendedRequestId": "Ab1cDEFGoAMFkhQ=",
            "requestTime": "01/Dec/2026:10:00:00 +0000",
            "messageDirection": "IN",
            "stage": "production",
            "connectedAt": 1796119200000,
            "requestTimeEpoch": 1796119200000,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "Ab1cDEFGoAMFkhQ=",
            "domainName": DOMAIN,
            "connectionId": connection_id,
            "apiId": "a1b2c3d4e5",
        },
        "isBase64Encoded": False,
    }


def message_event(connection_id: str, route: str, body: str) -> dict[str, Any]:
    """A MESSAGE event as API Gateway sends it for a routed frame."""
    return {
        "requestContext": {
            "routeKey": route,
            "messageId": "Ab1cDfGHoAMCJ9A=",
            "eventType": "MESSAGE",
            "extendedRequestId": "Ab1cDfGHoAMFkhR=",
            "requestTime": "01/Dec/2026:10:00:01 +0000",
            "messageDirection": "IN",
            "stage": "production",
            "connectedAt": 1796119200000,
            "requestTimeEpoch": 1796119201000,
            "identity": {"sourceIp": "203.0.113.7"},
            "requestId": "Ab1cDfGHoAMFkhR=",
            "domainName": DOMAIN,
            "connectionId": connection_id,
            "apiId": "a1b2c3d4e5",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def disconnect_event(connection_id: str) -> dict[str, Any]:
    """A $disconnect event as API Gateway sends it when the client closes."""
    event = message_event(connection_id, "$disconnect", "")
    event["requestContext"] |= {
        "eventType": "DISCONNECT",
        "disconnectStatusCode": 1001,
        "disconnectReason": "",
    }
    del event["requestContext"]["messageId"]
    event["headers"] = {"Host": DOMAIN}
    del event["body"]
    return event


def run_in_fresh_interpreter(
    asset: Path, env: dict[str, str], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Feed the events to the handler in `python -I -S` (no site-packages, no PYTHONPATH, no cwd on the path)."""
    # imported here: fanout_cdk imports aws_cdk, which starts a Node process (seconds of CPU) in any test
    # process that collects this file (deploy/ is on sys.path through conftest)
    from fanout_cdk.lifecycle import LAMBDA_HANDLER

    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUNNER, str(asset), LAMBDA_HANDLER],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=env,
        cwd=asset,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_bundled_lambda_answers_connect_from_its_asset_alone(default_synth: Synth, mongo_uri: str) -> None:
    """From the asset folder alone the handler accepts a $connect with a valid token (the record lands in
    MongoDB), refuses one without, answers a ping and removes the record on $disconnect."""
    asset = default_synth.lambda_asset()
    assert (asset / "fanout" / "lifecycle" / "__init__.py").is_file()
    assert not (asset / "bin").exists()
    database = f"asset_{secrets.token_hex(4)}"
    env = {
        "FANOUT_ENV": "dev",
        "FANOUT_MONGO_URI": mongo_uri,
        "FANOUT_MONGO_DB": database,
        "PATH": "/usr/bin:/bin",
    }
    token = tokens.sign("u-asset", DEV_JWT_SECRET)
    events = [
        connect_event("L0SM9cOFvHcCIhw=", token),
        connect_event("L0SM9cOFvHcCIhx=", None),
        message_event("L0SM9cOFvHcCIhw=", "ping", '{"action":"ping"}'),
    ]
    out = run_in_fresh_interpreter(asset, env, events)
    assert out["outside"] == [], "imported from outside the asset"
    assert not [p for p in out["path"] if "site-packages" in p]
    connected, refused, pong = out["responses"]
    assert connected == {"statusCode": 200}
    assert refused["statusCode"] == 401
    assert (pong["statusCode"], json.loads(pong["body"])["type"]) == (200, "ping.pong")
    with MongoClient(mongo_uri) as client:
        records = list(
            client[database]["websocketconnections"].find({}, {"_id": 0, "connectionId": 1, "userId": 1})
        )
    assert records == [{"connectionId": "L0SM9cOFvHcCIhw=", "userId": "u-asset"}]
    out = run_in_fresh_interpreter(asset, env, [disconnect_event("L0SM9cOFvHcCIhw=")])
    assert out["responses"] == [{"statusCode": 200}]
    with MongoClient(mongo_uri) as client:
        assert client[database]["websocketconnections"].count_documents({}) == 0


def test_bundle_holds_the_locked_versions(default_synth: Synth) -> None:
    """The Lambda asset holds exactly the dependencies requirements.lock pins (the image's lock), and fanout."""
    asset = default_synth.lambda_asset()
    installed = {}
    for dist in asset.glob("*.dist-info"):
        name, version = dist.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[canonicalize_name(name)] = version
    assert "0.1.0" == installed.pop("fanout")
    assert {name: version for name, (version, _) in locked().items()} == installed


def test_bundle_is_code_compiled_ahead(default_synth: Synth) -> None:
    """The Lambda's file system is read-only: its modules come compiled, and nothing of the bundling
    machine (console scripts, the installer's lock file) is shipped."""
    asset = default_synth.lambda_asset()
    sources = {p.stem for p in (asset / "fanout" / "lifecycle").glob("*.py")}
    compiled = {p.name.split(".")[0] for p in (asset / "fanout" / "lifecycle" / "__pycache__").glob("*.pyc")}
    assert sources and sources == compiled
    assert not (asset / "bin").exists()
    assert [] == [p.name for p in asset.iterdir() if p.is_file() and p.suffix not in (".py", ".so")]
