"""What publishing costs a domain service: the background publishers beside the direct send, on a local stack.

``measure(settings)`` takes a running local stack (``fanout dev``, or the one ``main`` starts) and
measures, in this one process:

- the request-path time of one ``publish`` call, p50 and p99, at audiences 1 and 1,000: the direct
  ``Publisher`` (one ``SendMessage`` in the call) beside ``BackgroundPublisher`` (threads) and
  ``AsyncBackgroundPublisher`` (tasks), calls paced as a busy request path would make them;
- sustained publishing: events/s one process sends through each background publisher for a few seconds
  (SQS acknowledged, buffer full blocking the caller), its CPU per event, and the CPU the local SQS (moto)
  used meanwhile, which tells which of the two sets the pace;
- the end-to-end latency the linger adds: publish to the frame at a real WebSocket client through the
  worker and the gateway emulator, p50 and p95, direct and background events interleaved.

The call-time and sustained phases publish to a queue of their own that no worker reads.
``python -m fanout.bench.publishing`` starts its own stack on free ports and prints a table and the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from prometheus_client import CollectorRegistry

from fanout.config import Settings
from fanout.local.stack import DEV_DEFAULTS, LocalStack
from fanout.publish import AsyncBackgroundPublisher, AsyncPublisher, BackgroundPublisher, Publisher
from fanout.tokens import sign

EVENT_TYPE = "notification.new"
PAYLOAD = {"notificationId": "n1", "title": "New follower", "body": "x" * 900}  # about a 1 KiB client frame
AUDIENCES = (1, 1000)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))] if ordered else 0.0


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": round(pct(ms, q), 3) for q in (50, 95, 99)} | {"n": len(ms)}


def cpu_s(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def call_times(settings: Settings, calls: int, gap_s: float) -> dict[str, dict[str, dict[str, float]]]:
    """``publish`` call time, ms, per publisher and audience, with the p99 of the call's own CPU time (on a
    shared machine the wall time's tail is mostly the scheduler's). Each publisher runs alone (a background
    publisher's senders would otherwise slow the others' calls); the audiences take turns call by call."""
    users = [f"bench-user-{i:05d}" for i in range(max(AUDIENCES))]

    async def timed(publish: Callable[..., Any]) -> dict[str, dict[str, float]]:
        times: dict[int, list[float]] = {a: [] for a in AUDIENCES}
        cpu: dict[int, list[float]] = {a: [] for a in AUDIENCES}
        for i in range(calls + 10):
            for size in AUDIENCES:
                t, c = time.perf_counter(), time.thread_time()
                done = publish(EVENT_TYPE, user_ids=users[:size], payload=PAYLOAD)
                if asyncio.iscoroutine(done):
                    await done
                if i >= 10:  # the first calls warm connections and caches up
                    times[size].append((time.perf_counter() - t) * 1000)
                    cpu[size].append((time.thread_time() - c) * 1000)
                await asyncio.sleep(gap_s)  # the async publisher's senders run here
        return {str(a): summary(v) | {"cpu_p99": round(pct(cpu[a], 99), 3)} for a, v in times.items()}

    async def run() -> dict[str, dict[str, dict[str, float]]]:
        direct = Publisher(settings)
        thread = BackgroundPublisher(settings, registry=CollectorRegistry(), sigterm=False)
        try:
            out = {"direct": await timed(direct.publish), "thread": await timed(thread.publish)}
        finally:
            thread.close()
            direct.close()
        async with AsyncBackgroundPublisher(settings, registry=CollectorRegistry(), sigterm=False) as pub:
            out["async"] = await timed(pub.publish)
        return out

    return asyncio.run(run())


def sustained(settings: Settings, seconds: float, moto_pid: int | None, form: str) -> dict[str, float]:
    """Publish as fast as the publisher takes events for ``seconds``, then flush; events/s SQS took."""
    registry = CollectorRegistry()
    events = 0
    moto0 = cpu_s(moto_pid) if moto_pid else 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    if form == "thread":
        pub = BackgroundPublisher(settings, registry=registry, block_ms=60_000, sigterm=False)
        while time.perf_counter() - t0 < seconds:
            pub.publish(EVENT_TYPE, user_ids=["bench-user"], payload=PAYLOAD)
            events += 1
        left = pub.close(60)
    else:

        async def run() -> int:
            nonlocal events
            async with AsyncBackgroundPublisher(
                settings, registry=registry, block_ms=60_000, sigterm=False
            ) as apub:
                while time.perf_counter() - t0 < seconds:
                    await apub.publish(EVENT_TYPE, user_ids=["bench-user"], payload=PAYLOAD)
                    events += 1
                return await apub.flush(60)

        left = asyncio.run(run())
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sent = registry.get_sample_value("fanout_publisher_sent_total", {"event_type": EVENT_TYPE}) or 0.0
    calls = registry.get_sample_value("fanout_publisher_batch_size_count") or 1.0
    out = {
        "events": events,
        "sent": int(sent),
        "unsent": left,
        "seconds": round(elapsed, 2),
        "events_per_s": round(sent / elapsed, 1),
        "cpu_us_per_event": round(cpu / max(1.0, sent) * 1e6, 1),
        "publisher_cpu_share": round(cpu / elapsed, 2),
        "mean_batch": round(sent / calls, 2),
    }
    if moto_pid:
        out["sqs_cpu_share"] = round((cpu_s(moto_pid) - moto0) / elapsed, 2)
    return out


async def _end_to_end(settings: Settings, events: int, gap_s: float) -> dict[str, Any]:
    user = f"bench-linger-{secrets.token_hex(3)}"
    url = f"ws://{settings.gateway_host}:{settings.gateway_port}/{settings.gateway_stage}"
    sent: dict[str, tuple[str, float]] = {}
    got: dict[str, float] = {}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, params={"token": sign(user, settings.jwt_key())}) as ws,
    ):

        async def read() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event_id = json.loads(msg.data).get("id")
                    if event_id:
                        got[event_id] = time.perf_counter()

        reader = asyncio.create_task(read())
        await asyncio.sleep(1.0)  # the connection record is written at $connect
        async with (
            AsyncPublisher(settings) as direct,
            AsyncBackgroundPublisher(settings, registry=CollectorRegistry(), sigterm=False) as background,
        ):
            for i in range(events + 10):
                kind, pub = ("direct", direct) if i % 2 else ("background", background)
                t = time.perf_counter()
                event_id = await pub.publish(EVENT_TYPE, user_ids=[user], payload=PAYLOAD)
                if i >= 10:
                    sent[event_id] = (kind, t)
                await asyncio.sleep(gap_s)
            deadline = time.monotonic() + 30
            while not set(sent) <= set(got) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        reader.cancel()
    ms: dict[str, list[float]] = {"direct": [], "background": []}
    for event_id, (kind, t) in sent.items():
        if event_id in got:
            ms[kind].append((got[event_id] - t) * 1000)
    out: dict[str, Any] = {k: summary(v) for k, v in ms.items()}
    out["missing"] = len(set(sent) - set(got))
    out["linger_ms"] = settings.publish_linger_ms
    out["added_p50_ms"] = round(out["background"]["p50"] - out["direct"]["p50"], 2)
    return out


def measure(
    settings: Settings,
    *,
    quick: bool = False,
    moto_pid: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every figure above against the stack ``settings`` reaches; returns them with the targets."""
    bench_queue = f"{settings.queue_name}-bench-publish-{secrets.token_hex(3)}"
    sqs: Any = boto3.client("sqs", **settings.aws_client_kwargs())
    queue_url = sqs.create_queue(QueueName=bench_queue)["QueueUrl"]
    side = settings.model_copy(update={"queue_name": bench_queue, "queue_url": None})
    try:
        echo("publish call time (direct, thread, async) at audiences 1 and 1,000")
        calls = call_times(side, 60 if quick else 300, 0.004)
        rate: dict[str, Any] = {}
        for form in ("thread", "async"):
            echo(f"sustained publishing ({form})")
            rate[form] = sustained(side, 2.0 if quick else 6.0, moto_pid, form)
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
        sqs.close()
    echo("end-to-end latency, direct and background events interleaved")
    e2e = asyncio.run(_end_to_end(settings, 40 if quick else 200, 0.03))
    return {
        "mode": "quick" if quick else "full",
        "publish_ms": calls,
        "sustained": rate,
        "end_to_end_ms": e2e,
        "targets": targets(calls, rate, e2e),
    }


def targets(calls: dict[str, Any], rate: dict[str, Any], e2e: dict[str, Any]) -> dict[str, Any]:
    """Issue 16's targets, each with its figure and whether it is met."""
    out: dict[str, Any] = {}
    for form in ("thread", "async"):
        worst = max(calls[form][a]["p99"] for a in calls[form])
        ratio = min(calls["direct"][a]["p99"] / max(1e-6, calls[form][a]["p99"]) for a in calls[form])
        out[f"publish_p99_max_ms_{form}"] = {"value": worst, "target": "<= 1"}
        out[f"direct_over_{form}_p99"] = {"value": round(ratio, 1), "target": ">= 10"}
        out[f"events_per_s_{form}"] = {"value": rate[form]["events_per_s"], "target": ">= 2000"}
    out["linger_added_p50_ms"] = {"value": e2e["added_p50_ms"], "target": "<= 20"}
    for item in out.values():
        op, limit = item["target"].split()
        item["met"] = item["value"] <= float(limit) if op == "<=" else item["value"] >= float(limit)
    return out


def table(r: dict[str, Any]) -> str:
    p, e = r["publish_ms"], r["end_to_end_ms"]
    head = "".join(f"{f'{name} p50':>12}{'p99':>8}{'CPU p99':>9}" for name in p)
    lines = ["Request-path time of one publish call, ms (CPU: the call's own)", f"  {'audience':>8}{head}"]
    for a in p["direct"]:
        cells = (f"{p[n][a]['p50']:>12.3f}{p[n][a]['p99']:>8.3f}{p[n][a]['cpu_p99']:>9.3f}" for n in p)
        lines.append(f"  {a:>8}" + "".join(cells))
    lines += ["", "Sustained publishing from one process (1 KiB events, audience 1)"]
    cols = ("events_per_s", "cpu_us_per_event", "publisher_cpu_share", "sqs_cpu_share", "mean_batch")
    lines.append(f"  {'form':>8}" + "".join(f"{c:>20}" for c in cols))
    for form, row in r["sustained"].items():
        lines.append(f"  {form:>8}" + "".join(f"{row.get(c, '-'):>20}" for c in cols))
    lines += ["", f"Publish to WebSocket frame through the worker, ms (linger {e['linger_ms']} ms)"]
    lines += [
        f"  {kind:>11} p50 {e[kind]['p50']:>7.1f}  p95 {e[kind]['p95']:>7.1f}"
        for kind in ("direct", "background")
    ]
    lines += ["", "Targets"]
    for name, t in r["targets"].items():
        lines.append(f"  {name:<28} {t['value']:>8} {t['target']:>9}  {'yes' if t['met'] else 'NO'}")
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    """Start a local stack on free ports, measure, print the table and the JSON."""
    args = argparse.ArgumentParser(
        prog="python -m fanout.bench.publishing", description=__doc__.split("\n")[0]
    )
    args.add_argument("--quick", action="store_true", help="small counts: checks the harness in a minute")
    args.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    opts = args.parse_args(argv)
    name = f"pubbench-{secrets.token_hex(4)}"
    env = {
        "FANOUT_ENV": "dev",
        "FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
        "FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{_free_port()}",
        "FANOUT_GATEWAY_PORT": str(_free_port()),
        "FANOUT_METRICS_PORT": str(_free_port()),
        "FANOUT_QUEUE_NAME": name,
        "FANOUT_DLQ_NAME": f"{name}-dlq",
        "FANOUT_TOPIC_NAME": name,
        "FANOUT_MONGO_DB": name.replace("-", "_"),
        "FANOUT_LOG_LEVEL": "WARNING",
        "FANOUT_LOG_FORMAT": "json",
    }
    fields: dict[str, Any] = {k[len("FANOUT_") :].lower(): v for k, v in env.items()}
    settings = Settings(**fields)

    def say(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    stack = LocalStack(settings, echo=say)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    stack.env = {**DEV_DEFAULTS, **clean, **env, "AWS_EC2_METADATA_DISABLED": "true"}
    say(f"starting the local stack (logs in {stack.log_dir})")
    load = list(os.getloadavg())
    try:
        stack.start()
        moto = stack.moto.process.pid if stack.moto.process else None
        results = measure(settings, quick=opts.quick, moto_pid=moto, echo=say)
    finally:
        stack.stop()
    # Shared machines: the load around the run says how much of it was ours.
    results["machine"] = {
        "cores": os.cpu_count(),
        "loadavg_start": load,
        "loadavg_end": list(os.getloadavg()),
    }
    print(table(results))
    print(json.dumps(results, indent=2))
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["end_to_end_ms"]["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
