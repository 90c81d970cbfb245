"""The TypeScript publisher (clients/typescript) against the real local stack: Node's own test runner publishes
through the package, and a real WebSocket client of the same user receives every event it sent, once."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections import Counter
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from fanout.envelope import parse_body
from tests.conftest import Stack
from tests.helpers import connect, sqs_client, wait_for
from tests.integration.conftest import PACKAGE

#: One build of clients/typescript per run (`built_package` builds once under a lock; xdist group too).
pytestmark = pytest.mark.xdist_group("node")


@pytest.mark.timeout(300)  # the first `npm ci` on a fresh machine downloads the packages
async def test_events_published_from_node_reach_a_websocket_client(
    stack: Stack, built_package: list[str], tmp_path: Path
) -> None:
    """Every event the Node tests publish arrives once at the user's WebSocket, with its id, type and payload."""
    user_id = f"ts-{secrets.token_hex(4)}"
    results = tmp_path / "results.jsonl"
    sqs = sqs_client(stack.settings)
    queue_url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
    sqs.close()
    env = {
        **os.environ,
        "FANOUT_TS_SQS_ENDPOINT": str(stack.settings.sqs_endpoint()),
        "FANOUT_TS_REGION": stack.settings.region,
        "FANOUT_TS_QUEUE_URL": queue_url,
        "FANOUT_TS_USER_ID": user_id,
        "FANOUT_TS_RESULTS": str(results),
        "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true",  # Node 20 works; the README says so
    }
    async with AsyncExitStack() as exits, aiohttp.ClientSession() as http:
        client = await connect(exits, http, stack.ws_url, stack.settings, user_id)
        node = await asyncio.create_subprocess_exec(
            "node", "--test", *built_package, cwd=PACKAGE, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(node.communicate(), 120)
        assert 0 == node.returncode, output.decode()[-8000:]

        records = [json.loads(line) for line in results.read_text().splitlines()]
        expected = {r["id"]: r for r in records if r["kind"] == "delivered"}
        undelivered = {r["id"] for r in records if r["kind"] == "undelivered"}
        assert len(expected) >= 40, "the Node tests recorded what they published"
        await wait_for(lambda: expected.keys() <= {e["id"] for e in client.events()}, timeout=30)
        await asyncio.sleep(1)  # room for a duplicate or a reported-failed event to show up

    received = client.events()
    assert dict.fromkeys(expected, 1) == Counter(e["id"] for e in received)
    assert not undelivered & {e["id"] for e in received}
    for frame in received:
        want = expected[frame["id"]]
        assert {"v", "id", "type", "payload", "sentAt"} == set(frame)
        assert (1, want["type"], want["payload"]) == (frame["v"], frame["type"], frame["payload"])
        assert frame["sentAt"].endswith("Z")
        datetime.fromisoformat(frame["sentAt"])

    built = [r["json"] for r in records if r["kind"] == "built"]
    assert built
    for raw in built:
        assert raw == parse_body(raw).to_json()  # the body Python's publisher writes, byte for byte
