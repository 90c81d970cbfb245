"""``fanout bench``: the worker against the inline design, aiobotocore and a bare-HTTP floor, on one stack.

Everything runs on 127.0.0.1: a ``LocalStack`` on free ports (moto, SecantusDB, the emulator and the
worker, each its own process), real WebSocket clients in a separate process (``sink``), and the
baselines in this process. CPU is per process: the worker's from ``/proc/<pid>/stat`` (the worker and
its children), the baselines' from ``time.process_time`` here, so neither the emulator, the clients nor
moto count against anyone.

The modules: ``plan`` (how much work: smoke, quick or full), ``rig`` (the stack, the clients, the
workload), ``phases`` (the worker's phases), ``broadcast`` (a broadcast to virtual connections),
``baselines`` (a, b, c, c'), ``proc`` (/proc accounting), ``results`` (the typed results and their
JSON), ``report`` (targets and the table), and this one, which runs them in order.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fanout.bench import baselines, phases, report
from fanout.bench.broadcast import broadcast
from fanout.bench.plan import plan_for
from fanout.bench.proc import machine, rss_mb
from fanout.bench.results import Broadcast, Latency, PoolFailure, Results, Throughput
from fanout.bench.rig import Rig


async def measure(rig: Rig) -> Results:
    """Every phase of the rig's plan, in order, on a started rig."""
    plan = rig.plan
    started_on = machine()
    rig.echo(f"connecting {len(rig.users)} WebSocket clients")
    opened = await rig.connect(rig.users)
    targets20 = rig.connection_ids(rig.users[:20])
    async with phases.open_feed(rig) as feed:
        await phases.throughput(rig, feed, 20, 200)  # warm-up
        by_fanout: dict[int, Throughput] = {}
        for fanout, posts in plan.throughput_posts.items():
            rig.echo(f"throughput at fan-out {fanout} ({posts} posts)")
            by_fanout[fanout] = await phases.throughput(rig, feed, fanout, posts)
        latency: dict[int, Latency] = {}
        for fanout in (1, 20):
            offered = by_fanout[fanout].posts_per_s / 2
            rig.echo(f"latency at fan-out {fanout}, {offered:.0f} posts/s for {plan.latency_s:.0f}s")
            latency[fanout] = await phases.steady(rig, feed, fanout, offered, plan.latency_s)
        soak = None
        if plan.soak_s:
            offered = by_fanout[20].posts_per_s / 2
            rig.echo(f"soak at fan-out 20, {offered:.0f} posts/s for {plan.soak_s:.0f}s (worker RSS)")
            soak = await phases.soak(rig, feed, offered, plan.soak_s)
    rig.echo("request-path publish time")
    publish_ms = phases.publish_times(rig)
    rig.echo("baseline (a): inline boto3 posts")
    inline = await baselines.inline(rig)
    rig.echo("baseline (b): aiobotocore")
    aiobotocore = await baselines.aiobotocore(rig, targets20)
    rig.echo("baseline (c): the floor, bare aiohttp")
    floor = await baselines.floor(rig, targets20)
    rig.echo("baseline (c'): the floor through the worker's own HTTP client")
    client_floor = await baselines.client_floor(rig, targets20)
    rss_at_end = [round(x, 1) for x in rss_mb(rig.worker_pid)]
    pool = None
    if plan.pool:
        async with phases.open_feed(rig) as feed:
            pool = await phases.pool_curve(rig, feed)
    wide = await _broadcast(rig, by_fanout[20], pool)
    results = Results(
        mode=plan.mode,
        machine=started_on,
        connections=opened,
        checks=dict(rig.checks),
        throughput=by_fanout,
        latency_by_fanout=latency,
        publish_ms=publish_ms,
        inline=inline,
        aiobotocore=aiobotocore,
        floor=floor,
        client_floor=client_floor,
        rss_mb_per_process=rss_at_end,
        soak=soak,
        pool=pool,
        broadcast=wide,
    )
    return replace(results, targets=report.targets(results))


async def _broadcast(
    rig: Rig, single: Throughput, pool: dict[int, Throughput | PoolFailure] | None
) -> Broadcast | None:
    """The broadcast phase on the worker running now: the pool curve's last size when it ran (its
    fan-out-20 rate to compare with), else the single worker and its fan-out-20 rate."""
    if not rig.plan.broadcast:
        return None
    processes, point_to_point = 1, single
    if pool:
        processes, last = list(pool.items())[-1]
        if isinstance(last, PoolFailure):
            rig.echo(f"broadcast: skipped, the pool of {processes} did not start")
            return None
        point_to_point = last
    async with phases.open_feed(rig) as feed:
        return await broadcast(rig, feed, point_to_point.posts_per_s, processes)


def _say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def run(
    mode: str, json_path: Path, soak_s: float | None = None, echo: Callable[[str], None] | None = None
) -> int:
    """Run the benchmark in ``mode`` (smoke, quick or full), print the table, write the JSON; exit code 1
    if frames went missing."""
    rig = Rig(plan_for(mode, soak_s), echo or _say)
    started = time.monotonic()
    try:
        rig.start()
        results = asyncio.run(measure(rig))
    finally:
        rig.stop()
    results = replace(results, seconds=round(time.monotonic() - started, 1))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results.to_json(), indent=2) + "\n")
    print(report.table(results))
    print(f"\nJSON: {json_path} ({results.seconds:.0f}s)")
    return 0 if results.received_all else 1
