"""What an operator sees of a real local stack: /metrics per event type, the emulator's counters, clean logs."""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from fanout import Publisher
from fanout.tokens import sign
from tests.conftest import Stack
from tests.helpers import Client, connect, wait_for
from tests.integration.conftest import Lane

MESSAGE = {"conversationId": "c1", "messageId": "m1", "senderId": "u0"}  # a valid chat.message payload


def _uid(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def _scrape(
    http: aiohttp.ClientSession, url: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get(f"{url}/metrics") as response:
        assert 200 == response.status
        text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _publish(stack: Stack, event_type: str, user: str, payload: dict[str, object]) -> str:
    publisher = await asyncio.to_thread(Publisher, stack.settings)
    try:
        return await asyncio.to_thread(publisher.publish, event_type, user_ids=[user], payload=payload)
    finally:
        publisher.close()


async def test_a_token_and_a_payload_never_reach_the_logs(stack: Stack) -> None:
    """A client's token and an event's payload stay out of every stack log line (at DEBUG, the most there
    is); the event id is logged."""
    settings = stack.settings
    user = _uid("secret")
    token = sign(user, settings.jwt_key())
    secret = f"payload-secret-{secrets.token_hex(12)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.ws_url, params={"token": token})
        client = Client(user, ws)
        es.push_async_callback(client.close)
        await ws.send_json({"action": "ping"})
        await wait_for(lambda: any(f.get("type") == "ping.pong" for f in client.frames))
        event_id = await _publish(
            stack, "notification.new", user, {"notificationId": "n1", "text": secret, "token": token}
        )
        await wait_for(lambda: [event_id] == [e["id"] for e in client.events()])
        assert secret == client.events()[0]["payload"]["text"]  # it did pass through the system
        await wait_for(lambda: event_id in stack.log.read_text())
    logs = stack.log.read_text()
    assert token not in logs
    assert token.split(".")[1] not in logs  # not even the claims part of the JWT
    assert secret not in logs
    assert event_id in logs


async def test_metrics_show_each_figure_per_event_type(stack: Stack) -> None:
    """After deliveries of two types (and one uncatalogued), /metrics counts each under its own label."""
    settings = stack.settings
    user = _uid("metrics")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        before = await _scrape(http, stack.metrics_url)
        client = await connect(es, http, stack.ws_url, settings, user)
        ids = [
            await _publish(stack, "chat.message", user, {**MESSAGE, "n": 1}),
            await _publish(stack, "chat.message", user, {**MESSAGE, "n": 2}),
            await _publish(
                stack,
                "follow.request.created",
                user,
                {"requestId": "fr1", "fromUserId": "u0", "toUserId": user},
            ),
            await _publish(stack, "chat.unheard.of", user, {}),
        ]
        await wait_for(lambda: sorted(ids) == sorted(e["id"] for e in client.events()))

        async def counted() -> bool:  # the worker counts an event just after its last post is answered
            now = await _scrape(http, stack.metrics_url)
            wanted = {"chat.message": 2, "follow.request.created": 1, "other": 1}
            return all(
                _value(now, "fanout_events_total", event_type=t, outcome="delivered")
                - _value(before, "fanout_events_total", event_type=t, outcome="delivered")
                >= n
                for t, n in wanted.items()
            )

        await wait_for(counted)
        after = await _scrape(http, stack.metrics_url)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert 2 <= grew("fanout_events_total", event_type="chat.message", outcome="delivered")
    assert 1 <= grew("fanout_events_total", event_type="follow.request.created", outcome="delivered")
    assert 1 <= grew("fanout_events_total", event_type="other", outcome="delivered")
    assert 0 == _value(after, "fanout_events_total", event_type="chat.unheard.of", outcome="delivered")
    assert 2 <= grew("fanout_deliveries_total", event_type="chat.message", outcome="ok")
    assert 2 <= grew("fanout_delivery_latency_seconds_count", event_type="chat.message")
    assert 2 <= grew("fanout_post_latency_seconds_count", event_type="chat.message")
    assert 4 <= grew("fanout_queue_lag_seconds_count")
    assert 4 <= grew("fanout_lookup_latency_seconds_count")
    assert 1 == _value(after, "fanout_ready")
    assert 0 <= _value(after, "fanout_events_in_flight")
    for name in (
        "fanout_connections_pruned_total",
        "fanout_posts_in_flight",
        "fanout_throttle_wait_seconds_total",
    ):
        assert (name, frozenset()) in after, name


async def test_gateway_emulator_exports_its_own_counters(stack: Stack) -> None:
    """The emulator's /metrics counts management-API answers by status and its open sockets."""
    settings = stack.settings
    user = _uid("gw")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        before = await _scrape(http, stack.gateway_url)
        client = await connect(es, http, stack.ws_url, settings, user)
        event_id = await _publish(stack, "notification.new", user, {"notificationId": "n1"})
        await wait_for(lambda: [event_id] == [e["id"] for e in client.events()])
        after = await _scrape(http, stack.gateway_url)
    assert 1 <= _value(after, "fanout_gateway_posts_total", status="200") - _value(
        before, "fanout_gateway_posts_total", status="200"
    )
    assert 1 <= _value(after, "fanout_gateway_connections_total", event="connected") - _value(
        before, "fanout_gateway_connections_total", event="connected"
    )
    assert 1 <= _value(after, "fanout_gateway_open_connections")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_at_info_a_delivered_event_is_counted_in_the_summary_line_not_logged_alone(lane: Lane) -> None:
    """At INFO, a delivered event has no line of its own but is counted in ``events_summary``; an event
    with nobody connected keeps its ``event_done`` line; the stopping worker flushes what is left."""
    stack = lane.stack
    worker = lane.worker(FANOUT_LOG_LEVEL="INFO", FANOUT_LOG_SUMMARY_S="3600")  # only the stop flushes
    await worker.ready()
    user = _uid("summary")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        delivered = await _publish(stack, "notification.new", user, {"notificationId": "n1"})
        await wait_for(lambda: [delivered] == [e["id"] for e in client.events()])
        nobody = await _publish(stack, "notification.new", _uid("absent"), {"notificationId": "n2"})
        await wait_for(lambda: nobody in worker.log.read_text())
    assert 0 == worker.terminate()
    lines = _lines(worker.log)
    done = {x["event_id"]: x for x in lines if x.get("event") == "event_done"}
    assert delivered not in done
    assert ("no_connections", 0) == (done[nobody]["outcome"], done[nobody]["posts"])
    summaries = [x for x in lines if x.get("event") == "events_summary"]
    assert 1 == len(summaries), "one line when the worker stops, none before with a one-hour interval"
    counted = summaries[0]["by_type"]["notification.new"]
    assert ({"delivered": 1, "no_connections": 1}, 1) == (counted, summaries[0]["posts"])


def _emf_ready(log: Path) -> list[float]:
    """The CloudWatch ``Ready`` values a worker printed as EMF lines, in order."""
    values = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            if "Ready" in doc:
                values.append(doc["Ready"])
    return values


async def test_a_worker_that_cannot_reach_mongodb_at_startup_reports_not_ready_to_cloudwatch(
    lane: Lane, closed_port: int
) -> None:
    """A worker that starts while MongoDB refuses connections prints Ready 0 for CloudWatch (as /metrics
    shows fanout_ready 0), so the WorkerNotReady alarm sees it rather than no report from it at all."""
    refused = f"mongodb://127.0.0.1:{closed_port}"
    worker = lane.worker(
        FANOUT_MONGO_URI=refused,
        FANOUT_MONGO_TIMEOUT_MS="500",
        FANOUT_CLOUDWATCH_EMF="true",
        FANOUT_CLOUDWATCH_INTERVAL_S="0.5",
    )
    await wait_for(lambda: "dependencies_unavailable" in worker.log.read_text(), timeout=30)
    await wait_for(lambda: bool(_emf_ready(worker.log)), timeout=5)
    assert {0} == set(_emf_ready(worker.log))
    async with aiohttp.ClientSession() as http:
        assert 0 == _value(await _scrape(http, lane.stack.metrics_url), "fanout_ready")
