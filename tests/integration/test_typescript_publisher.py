"""The TypeScript publisher (clients/typescript) against the real local stack: Node's own test runner publishes
through the package, and a real WebSocket client of the same user receives every event it sent, once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from fanout.catalog import ACCESS_REVOKED, CURRENT
from fanout.envelope import parse_body
from fanout.errors import InvalidMessage
from fanout.publish import build_event, catalog_event
from tests.catalog_examples import EXAMPLES
from tests.conftest import Server, Stack, dev_settings
from tests.helpers import SlowFront, by_key, connect, interleaved_key, queued_seqs, sqs_client, wait_for
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


#: What SQS takes in a message body (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF).
SQS_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
BUILD = """
import { readFileSync } from "node:fs";
import { buildEvent } from "./dist-test/src/index.js";
const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map(([type, input]) => {
  try { return { json: buildEvent(type, input).json }; } catch (e) { return { reason: e.reason ?? String(e) }; }
});
process.stdout.write(JSON.stringify(out));
"""
#: Inputs the worker dead-letters, though they pass every check the TypeScript package made.
REFUSED_BY_THE_WORKER = [
    ("a topic with a space", {"topics": ["conversation c9"]}, "schema"),
    ("a topic without a kind", {"topics": ["c9"]}, "schema"),
    ("an ordering key with a space", {"userIds": ["u1"], "meta": {"orderingKey": "a b"}}, "schema"),
    ("an empty ordering key", {"userIds": ["u1"], "meta": {"orderingKey": ""}}, "schema"),
    ("a non-ASCII ordering key", {"userIds": ["u1"], "meta": {"orderingKey": "conversation:é"}}, "schema"),
    ("a payloadVersion string", {"userIds": ["u1"], "meta": {"payloadVersion": "2"}}, "schema"),
    ("an expiresAt in prose", {"userIds": ["u1"], "meta": {"expiresAt": "Feb 17 2026 10:00"}}, "schema"),
    ("an expiresAt on no day", {"userIds": ["u1"], "meta": {"expiresAt": "2026-02-30T10:00:00Z"}}, "schema"),
    ("a lone surrogate in the payload", {"userIds": ["u1"], "payload": {"text": "a\ud800"}}, "schema"),
    ("a lone surrogate in a user id", {"userIds": ["u\udc00"]}, "schema"),
    ("a lone surrogate in a payload key", {"userIds": ["u1"], "payload": {"k\ud800": 1}}, "schema"),
    (
        "a frame whose key takes it over 128 KiB",
        {"userIds": ["u1"], "payload": {"t": "x" * (128 * 1024 - 120)}, "meta": {"orderingKey": "k" * 100}},
        "too_large",
    ),
]
#: Inputs the worker takes: the package must build them, as text SQS takes.
TAKEN_BY_THE_WORKER = [
    ("U+FFFE and U+FFFF in the payload", {"userIds": ["u1"], "payload": {"t": "a\ufffeb\uffffc\\ud800"}}),
    ("U+FFFF in a key and a topic id", {"topics": ["user:u1"], "payload": {"k\uffff": 1}}),
    ("a well-formed pair", {"userIds": ["u\U0001f600"], "payload": {"t": "\U0001f600"}}),
    (
        "a key and a payload version",
        {"userIds": ["u1"], "meta": {"orderingKey": "user:u1", "payloadVersion": 2}},
    ),
    ("a date and an offset", {"userIds": ["u1"], "meta": {"expiresAt": "2026-02-17T10:00:00+01:00"}}),
]


@pytest.mark.timeout(120)
def test_node_builds_only_bodies_the_worker_takes_as_text_sqs_takes(built_package: list[str]) -> None:
    """buildEvent refuses, with the worker's reason, every input the worker would dead-letter (topic and
    ordering-key patterns, payload versions, lone surrogates, a frame grown by its key), and writes what
    it takes as text SQS accepts, U+FFFE and U+FFFF escaped, read by Python's parser to the same body."""
    cases = [("notification.misc", i) for _, i, _ in REFUSED_BY_THE_WORKER]
    cases += [("notification.misc", i) for _, i in TAKEN_BY_THE_WORKER]
    built = subprocess.run(
        ["node", "--input-type=module", "-e", BUILD], cwd=PACKAGE, input=json.dumps(cases),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    results = json.loads(built)
    for (what, _, reason), result in zip(REFUSED_BY_THE_WORKER, results, strict=False):
        if "json" in result:  # the oracle: the worker's own parser refuses what Node built
            with pytest.raises(InvalidMessage):
                parse_body(result["json"])
        assert {"reason": reason} == result, what
    for (what, given), result in zip(TAKEN_BY_THE_WORKER, results[len(REFUSED_BY_THE_WORKER) :], strict=True):
        assert "json" in result, (what, result)
        assert SQS_TEXT.fullmatch(result["json"]), what
        body = parse_body(result["json"])
        assert given.get("payload", {}) == body.payload, what
        assert result["json"] == body.to_json(), what  # the body Python's publisher writes, byte for byte


SEND_TO_FIFO = """
import { BatchPublisher, Publisher } from "./dist-test/src/index.js";
const [queueUrl, endpoint, region] = process.argv.slice(1);
const options = { queueUrl, endpoint, region, credentials: { accessKeyId: "testing", secretAccessKey: "testing" } };
const failures = [];
const one = new Publisher(options);
const batch = new BatchPublisher({ ...options, flushOnExit: false, maxAttempts: 1, onFailure: (f) => failures.push(f.code) });
const ids = [];
try {
  ids.push(await one.publish("notification.misc", { userIds: ["u1"], meta: { orderingKey: "user:u1" } }));
} catch (error) {
  failures.push(error.name);
}
ids.push(await batch.publish("notification.misc", { userIds: ["u1"], meta: { orderingKey: "user:u1" } }));
ids.push(await batch.publish("notification.misc", { userIds: ["u2"] }));
const message = { conversationId: "c9", messageId: "m1", senderId: "u2" };
ids.push(await one.publish("chat.message", { userIds: ["u1"], payload: message }));
ids.push(await batch.publish("chat.message", { userIds: ["u2"], payload: message }));
await batch.close();
one.close();
process.stdout.write(JSON.stringify({ ids, failures }));
"""


@pytest.mark.timeout(120)
def test_node_sends_to_a_fifo_queue_with_the_group_and_deduplication_id_python_uses(
    built_package: list[str], moto_server: Server
) -> None:
    """On a FIFO queue both TypeScript publishers send each event with MessageGroupId = its ordering key
    (the caller's, the catalog's for a catalogued type, else its id) and MessageDeduplicationId = its id,
    as the Python publishers do; without them SQS refuses every send."""
    settings = dev_settings(moto_server)
    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"ts-{secrets.token_hex(4)}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    env = {**os.environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    sent = subprocess.run(
        ["node", "--input-type=module", "-e", SEND_TO_FIFO, url, str(settings.sqs_endpoint()), settings.region],
        cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    result = json.loads(sent)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    sqs.close()
    assert [] == result["failures"]
    ids = result["ids"]
    groups = {json.loads(m["Body"])["id"]: m["Attributes"] for m in messages.get("Messages", [])}
    want = {ids[0]: ("user:u1", ids[0]), ids[1]: ("user:u1", ids[1]), ids[2]: (ids[2], ids[2])}
    want |= {ids[3]: ("chat:c9", ids[3]), ids[4]: ("chat:c9", ids[4])}
    got = {i: (a["MessageGroupId"], a["MessageDeduplicationId"]) for i, a in groups.items()}
    assert want == got


CATALOG_BUILD = """
import { readFileSync } from "node:fs";
import { catalogEvent } from "./dist-test/src/index.js";
const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map(([type, input]) => {
  try { return { json: catalogEvent(type, input).json }; } catch (e) { return { reason: e.reason ?? String(e) }; }
});
process.stdout.write(JSON.stringify(out));
"""
SENT_AT = re.compile(r'"sentAt":"[^"]*"')


def _same_time(body: str) -> str:
    return SENT_AT.sub('"sentAt":"2026-02-17T00:00:00.000Z"', body, count=1)


@pytest.mark.timeout(120)
def test_node_builds_the_envelope_python_send_event_builds(built_package: list[str]) -> None:
    """For every catalogued type, and with a caller's meta (its own ordering key, a stale payloadVersion,
    extra keys), the publishers' catalogEvent writes the body Python's send_event writes, byte for byte
    but the send time: the catalog's meta.payloadVersion and meta.orderingKey (chat:c9, organization:org7:u_bob)
    included; an uncatalogued type is built as Python's build_event builds it."""
    audience = {"user_ids": ["u1"], "topics": ["conversation:c9"], "exclude_connection_ids": ["cx"]}
    metas: list[dict[str, object]] = [
        {},
        {"traceId": "t-1", "source": "api", "tenant": "t9"},
        {"orderingKey": "mine", "payloadVersion": 7},
    ]
    python: list[str] = []
    cases: list[tuple[str, dict[str, object]]] = []
    for event_type in sorted(CURRENT):
        users_only = event_type == ACCESS_REVOKED  # a revocation reaches users alone (bad_target otherwise)
        to = {"user_ids": ["u1"]} if users_only else audience
        node_to = {"userIds": ["u1"]} if users_only else {
            "userIds": ["u1"], "topics": ["conversation:c9"], "excludeConnectionIds": ["cx"]}  # fmt: skip
        for n, meta in enumerate(metas):
            event_id = f"evt_{event_type.replace('.', '_')}_{n}"
            body = catalog_event(EXAMPLES[event_type], meta=meta, event_id=event_id, **to)  # type: ignore[arg-type]
            python.append(body.to_json())
            cases.append((event_type, {"id": event_id, **node_to, "payload": body.payload, "meta": meta}))
    other = build_event("chat.unheard.of", user_ids=["u1"], payload={"a": 1}, event_id="evt_other")
    python.append(other.to_json())
    cases.append(("chat.unheard.of", {"id": "evt_other", "userIds": ["u1"], "payload": {"a": 1}}))
    built = subprocess.run(
        ["node", "--input-type=module", "-e", CATALOG_BUILD], cwd=PACKAGE, input=json.dumps(cases),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    node = [r.get("json", r) for r in json.loads(built)]
    assert len(CURRENT) * len(metas) + 1 == len(node)
    assert [_same_time(b) for b in python] == [_same_time(b) if isinstance(b, str) else b for b in node]
    keys = {json.loads(b)["type"]: json.loads(b)["meta"]["orderingKey"] for b in python[:: len(metas)]}
    assert ("chat:c9", "organization:org7:u_bob", None) == (
        keys["chat.message"],
        keys["organization.member.updated"],
        keys["notification.new"],
    )


@pytest.mark.timeout(120)
def test_node_refuses_an_ordering_field_that_escaped_its_type(built_package: list[str]) -> None:
    """A payload whose ordering field is missing, empty or not a string (past the compiler with `as`)
    is refused as payload_schema, as the worker would dead-letter it, instead of keying it `chat:undefined`."""
    cases = [
        ("chat.message", {"userIds": ["u1"], "payload": {"messageId": "m1", "senderId": "u2"}}),
        (
            "chat.message",
            {"userIds": ["u1"], "payload": {"conversationId": "", "messageId": "m1", "senderId": "u2"}},
        ),
        (
            "chat.message",
            {"userIds": ["u1"], "payload": {"conversationId": 9, "messageId": "m1", "senderId": "u2"}},
        ),
        (
            "chat.message",
            {"userIds": ["u1"], "meta": {"orderingKey": "mine"}, "payload": {"messageId": "m1"}},
        ),
    ]
    built = subprocess.run(
        ["node", "--input-type=module", "-e", CATALOG_BUILD], cwd=PACKAGE, input=json.dumps(cases),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    results = json.loads(built)
    assert [{"reason": "payload_schema"}] * 3 == results[:3]
    assert "json" in results[3]  # the caller's own key: nothing to derive (the worker checks the payload)
    with pytest.raises(InvalidMessage) as caught:
        parse_body(results[3]["json"])
    assert "payload_schema" == caught.value.reason


SEND_THROUGH_REFUSALS = """
import { BatchPublisher } from "./dist-test/src/index.js";
const [queueUrl, missingUrl, endpoint, region] = process.argv.slice(1);
const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };
const failures = [];
const options = { endpoint, region, credentials, flushOnExit: false, lingerMs: 60_000, retryDelayMs: 10,
                  maxAttempts: 3, onFailure: (f) => failures.push([f.id, f.code, f.attempts]) };
const small = (n) => ({ userIds: ["u1"], payload: { notificationId: `n${n}` } });
const big = { userIds: Array.from({ length: 100 }, (_, i) => `user-${i}`), payload: { notificationId: "big" } };
const batch = new BatchPublisher({ ...options, queueUrl });
const ids = [await batch.publish("notification.new", small(1)), await batch.publish("notification.new", big),
             await batch.publish("notification.new", small(2))];
const stats = await batch.close();
const lost = new BatchPublisher({ ...options, queueUrl: missingUrl });
ids.push(await lost.publish("notification.new", small(3)));
await lost.close();
process.stdout.write(JSON.stringify({ ids, failures, sent: stats.sent }));
"""


@pytest.mark.timeout(120)
def test_node_sends_a_refused_batch_one_by_one_and_retries_a_missing_queue(
    built_package: list[str], moto_server: Server
) -> None:
    """The TypeScript batch publisher, as the Python ones: a SendMessageBatch SQS refuses whole for one
    body (over the queue's MaximumMessageSize of 1 KiB) goes again entry by entry, so the entries around
    it arrive and only it is reported (InvalidParameterValue, one attempt); a missing queue (a 400 that is
    the queue's) is retried up to maxAttempts before it is reported, not given up at the first answer."""
    settings = dev_settings(moto_server)
    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"ts-{secrets.token_hex(4)}", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    env = {**os.environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    argv = [url, f"{url}-missing", str(settings.sqs_endpoint()), settings.region]
    sent = subprocess.run(
        ["node", "--input-type=module", "-e", SEND_THROUGH_REFUSALS, *argv],
        cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    result = json.loads(sent)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    sqs.close()
    first, big, second, lost = result["ids"]
    assert {first, second} == {json.loads(m["Body"])["id"] for m in messages.get("Messages", [])}
    assert 2 == result["sent"]
    assert [[big, "InvalidParameterValue", 1], [lost, "QueueDoesNotExist", 3]] == result["failures"]


FIFO_ORDER = """
import { BatchPublisher } from "./dist-test/src/index.js";
const [queueUrl, endpoint, region] = process.argv.slice(1);
const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };
const batch = new BatchPublisher({ queueUrl, endpoint, region, credentials, flushOnExit: false, lingerMs: 60_000 });
for (let seq = 1; seq <= 20; seq += 1) {
  const id = `evt_${seq}`;
  await batch.publish("notification.misc", { id, userIds: ["u1"], meta: { orderingKey: "user:u1", seq } });
}
process.stdout.write(JSON.stringify(await batch.close()));
"""


@pytest.mark.timeout(120)
def test_node_sends_a_keys_batches_to_a_fifo_queue_one_after_the_other(
    built_package: list[str], moto_server: Server
) -> None:
    """Twenty events of one key on a FIFO queue make two batches, and SQS is slow to answer the first:
    the BatchPublisher sends the second once the first is answered, so the key's events are in the queue
    in the order they were published, as the Python background publishers send them (before, both went
    at once and the second batch went in first: 11-20, 1-10)."""
    settings = dev_settings(moto_server)
    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"ts-{secrets.token_hex(4)}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    env = {**os.environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    with SlowFront(str(settings.sqs_endpoint()), 1.0, hold="evt_1") as front:
        stats = subprocess.run(
            ["node", "--input-type=module", "-e", FIFO_ORDER, url, front.url, settings.region],
            cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    seqs = queued_seqs(sqs, url)
    sqs.close()
    assert (20, 0, 2) == (json.loads(stats)["sent"], json.loads(stats)["failed"], front.batches)
    assert list(range(1, 21)) == seqs


FIFO_INTERLEAVED = """
import { BatchPublisher } from "./dist-test/src/index.js";
const [queueUrl, endpoint, region, ...keys] = process.argv.slice(1);
const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };
const batch = new BatchPublisher({ queueUrl, endpoint, region, credentials, flushOnExit: false, lingerMs: 60_000,
                                   retryDelayMs: 20 });
for (const [i, orderingKey] of keys.entries()) {
  const seq = i + 1;
  await batch.publish("notification.misc", { id: `evt_${seq}`, userIds: ["u1"], meta: { orderingKey, seq } });
}
process.stdout.write(JSON.stringify(await batch.close()));
"""


@pytest.mark.timeout(120)
def test_node_sends_other_keys_beside_a_fifo_group_being_sent(
    built_package: list[str], moto_server: Server
) -> None:
    """Interleaved keys on a FIFO queue (a hot key every other event), SQS slow to answer the first batch
    and failing every entry of the second call once: the BatchPublisher sends batches of other keys beside
    the first, so more than one call is in flight at once, and each key's events are in the queue in
    publish order, the retried ones included (before, the hot key at the head held every batch back)."""
    settings = dev_settings(moto_server)
    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"ts-{secrets.token_hex(4)}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    env = {**os.environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    keys = [interleaved_key(seq) for seq in range(1, 201)]
    with SlowFront(str(settings.sqs_endpoint()), 1.0, hold="evt_1", throttle_call=2) as front:
        stats = subprocess.run(
            ["node", "--input-type=module", "-e", FIFO_INTERLEAVED, url, front.url, settings.region, *keys],
            cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    seqs = queued_seqs(sqs, url)
    sqs.close()
    assert (200, 0, list(range(1, 201))) == (
        json.loads(stats)["sent"],
        json.loads(stats)["failed"],
        sorted(seqs),
    )
    assert 1 < front.most_batches
    assert {key: sorted(keyed) for key, keyed in by_key(seqs).items()} == by_key(seqs)


CLOSE_THEN_SIGTERM = """
import { BatchPublisher } from "./dist-test/src/index.js";
const [endpoint] = process.argv.slice(1);
const report = (f) => process.stdout.write(JSON.stringify([f.id, f.code]) + "\\n");  // a pipe: written at once
const batch = new BatchPublisher({ queueUrl: `${endpoint}/123456789012/q`, endpoint, region: "us-east-1",
                                   shutdownTimeoutMs: 500, onFailure: report });
process.stdout.write(JSON.stringify(await batch.publish("notification.misc", { userIds: ["u1"] })) + "\\n");
void batch.close();  // the service's own close, without a timeout
setTimeout(() => process.kill(process.pid, "SIGTERM"), 100);
"""


@pytest.mark.timeout(120)
def test_node_ends_on_sigterm_within_its_shutdown_timeout_after_an_unbounded_close(
    built_package: list[str], tmp_path: Path
) -> None:
    """SQS accepts connections and never answers; the service has called close() without a timeout when
    SIGTERM comes. The signal's shutdownTimeoutMs (500 ms) bounds that close: the event is reported
    (CloseTimeout) and the process ends by the signal. Before, the signal's close was the service's own,
    unbounded one: the process never ended (Node's default exit on SIGTERM is replaced by the hook)."""
    env = {**os.environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the backlog; no request is ever read
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        run = subprocess.run(
            ["node", "--input-type=module", "-e", CLOSE_THEN_SIGTERM, endpoint],
            cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        took = time.monotonic() - started
    event_id, *failures = [json.loads(line) for line in run.stdout.splitlines()]
    assert -signal.SIGTERM == run.returncode, run.stderr[-2000:]
    assert [[event_id, "CloseTimeout"]] == failures
    assert took < 10
