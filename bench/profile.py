"""Where the worker's CPU goes per event at fan-out 1 and 2: py-spy samples the worker through the bench's
closed-loop throughput phase, and each sampled stack is put in one bucket (receive, parse, lookup, post,
delete, metrics, logging, handling, the event loop).

    .venv/bin/python bench/profile.py                 # about 3 minutes on 2 cores; prints a table
    .venv/bin/python bench/profile.py --log-level DEBUG   # every event's own log line, as before aggregation

py-spy (the dev extra) starts the worker as its child: this machine does not let it attach to a running
process. Shares come from the samples; µs per event is the share times the worker's CPU per event, read
from /proc as the bench does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from fanout.bench import phases
from fanout.bench.plan import QUICK
from fanout.bench.proc import process_tree
from fanout.bench.rig import Rig

BUCKETS = ("receive", "parse", "history", "lookup", "post", "delete", "metrics", "logging", "handling", "loop")
#: The deepest fanout module of a stack names its bucket (libraries below it count with it).
MODULES = {
    "fanout/worker/received.py": "parse",
    "fanout/envelope.py": "parse",
    "fanout/attributes.py": "parse",
    "fanout/catalog": "parse",
    "fanout/store/": "lookup",
    "fanout/history.py": "history",
    "fanout/gateway/": "post",
    "fanout/worker/delivery.py": "post",
    "fanout/worker/lanes.py": "post",
    "fanout/worker/result.py": "post",
    "fanout/worker/limiter.py": "post",
    "fanout/worker/consumer.py": "handling",
    "fanout/worker/intake.py": "handling",
    "fanout/worker/decide.py": "handling",
    "fanout/worker/settle.py": "handling",
    "fanout/worker/fate.py": "handling",
    "fanout/worker/summary.py": "logging",
    "fanout/logging.py": "logging",
    "fanout/metrics.py": "metrics",
}


def bucket(stack: str) -> str | None:
    """The bucket of one collapsed stack (``frame;frame;...`` root first); None for a sample that is no
    event's work: the worker starting (imports), an idle executor thread, the loop waiting in epoll."""
    leaf = stack.rpartition(";")[2]
    if "importlib._bootstrap" in stack:
        return None
    if leaf.startswith(("EpollSelector.select", "_worker (")) or "(threading.py" in leaf:
        return None
    if "structlog/" in stack or "fanout/logging.py" in stack:
        return "logging"
    if "prometheus_client/" in stack:
        return "metrics"
    frames = stack.split(";")
    for frame in reversed(frames):
        if "fanout/worker/sqs" in frame:  # the SQS client and the batcher: which call is it?
            if "receive" in stack:
                return "receive"
            return "delete"  # batched deletes and visibility changes
        for module, name in MODULES.items():
            if module in frame:
                return name
    if "pymongo/" in stack:
        return "lookup"
    return "loop"  # the event loop, selectors and transports with no fanout frame above them


def breakdown(raw: Path) -> Counter[str]:
    """Samples per bucket from py-spy's raw (collapsed) output."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and (name := bucket(stack)) is not None:
            counts[name] += int(n)
    return counts


class ProfiledRig(Rig):
    """The bench's rig with its worker replaced by one started under py-spy."""

    spy: subprocess.Popen[bytes] | None = None

    @property
    def worker_pid(self) -> int:
        assert self.spy is not None
        children = [p for p in process_tree(self.spy.pid) if p != self.spy.pid]
        if not children:
            raise RuntimeError("py-spy has no worker child")
        return children[0]


async def profile(
    rig: ProfiledRig, fanout: int, posts: int, out: Path, level: str
) -> tuple[float, Counter[str]]:
    """One throughput phase under py-spy: the worker's CPU µs per event, and samples per bucket."""
    assert rig.stack is not None
    assert rig.stack.worker is not None
    own = rig.stack.worker.process  # the stack's own worker stops; ours runs under py-spy
    if own is not None and own.poll() is None:
        own.terminate()
        own.wait(30)
    env = {**rig.stack.env, "FANOUT_LOG_LEVEL": level}
    spy = [sys.executable.replace("python", "py-spy"), "record", "--rate", "250", "--format", "raw"]
    cmd = [*spy, "--output", str(out), "--", sys.executable, "-m", "fanout", "worker", "--processes", "1"]
    rig.spy = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        await asyncio.sleep(4)  # the worker connects and polls
        async with phases.open_feed(rig) as feed:
            await phases.throughput(rig, feed, fanout, 200)  # warm-up
            result = await phases.throughput(rig, feed, fanout, posts)
        os.kill(rig.worker_pid, signal.SIGTERM)
        rig.spy.wait(60)  # py-spy writes its file when the worker exits
    finally:
        if rig.spy.poll() is None:
            rig.spy.kill()
    return result.worker_cpu_us_per_event, breakdown(out)


async def main(args: argparse.Namespace) -> None:
    rig = ProfiledRig(replace(QUICK, users=200), echo=lambda line: print(line, file=sys.stderr))
    rig.start()
    try:
        await rig.connect(rig.users)
        with tempfile.TemporaryDirectory() as scratch:
            tmp = args.raw or scratch
            print(f"worker at FANOUT_LOG_LEVEL={args.log_level}; CPU µs per event by bucket (share)")
            print(f"{'fan-out':>8} {'µs/event':>9}  " + "  ".join(f"{b:>14}" for b in BUCKETS))
            for fanout in (1, 2):
                us, counts = await profile(
                    rig, fanout, args.posts, Path(tmp) / f"f{fanout}.txt", args.log_level
                )
                total = max(1, sum(counts.values()))
                cells = [f"{us * counts[b] / total:7.0f} ({counts[b] / total:4.0%})" for b in BUCKETS]
                print(f"{fanout:>8} {us:>9.0f}  " + "  ".join(f"{c:>14}" for c in cells))
    finally:
        rig.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3000, help="posts per fan-out (default 3000)")
    parser.add_argument("--raw", help="keep py-spy's raw samples in this directory (f1.txt, f2.txt)")
    parser.add_argument("--log-level", default="INFO", help="the worker's FANOUT_LOG_LEVEL (default INFO)")
    asyncio.run(main(parser.parse_args()))
