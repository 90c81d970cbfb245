"""Where the worker's CPU goes per event at fan-out 1 and 2: py-spy samples the worker through the bench's
closed-loop throughput phase, and each sampled stack is put in one bucket (receive, parse, lookup, post,
delete, metrics, logging, handling, the event loop).

    .venv/bin/python bench/profile.py                 # about 3 minutes on 2 cores; prints a table
    .venv/bin/python bench/profile.py --log-level DEBUG   # every event's own log line, as before aggregation
    .venv/bin/python bench/profile.py --count         # Python calls per event by bucket, fan-out 1 and 20
    .venv/bin/python bench/profile.py --count --detail calls.json   # and by function, into a JSON file

py-spy (the dev extra) starts the worker as its child: this machine does not let it attach to a running
process. Shares come from the samples; µs per event is the share times the worker's CPU per event, read
from /proc as the bench does.

``--count`` counts instead of sampling: every Python and C function call the worker makes during the
phase, put in the same buckets. The count is the same from run to run within a percent or two, where
CPU time on a shared machine moves by a fifth between two runs of the same code, so it shows whether a
change removes work at all; it says nothing of what each call costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from fanout.bench import phases
from fanout.bench.plan import QUICK
from fanout.bench.proc import process_tree
from fanout.bench.rig import Rig

BUCKETS = (
    "receive",
    "parse",
    "history",
    "lookup",
    "post",
    "delete",
    "metrics",
    "logging",
    "handling",
    "loop",
)
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


def _kind(filename: str) -> str | None:
    """What a frame's file says of its call's bucket, by the rules of ``bucket``."""
    if "structlog/" in filename or "fanout/logging.py" in filename:
        return "logging"
    if "prometheus_client/" in filename:
        return "metrics"
    if "fanout/worker/sqs" in filename:
        return "sqs"
    for module, name in MODULES.items():
        if module in filename:
            return name
    return "mongo" if "pymongo/" in filename else None


def frame_bucket(frame: FrameType | None, kinds: dict[str, str | None]) -> str:
    """The bucket of a call made in ``frame``, walking out from it (``kinds`` caches ``_kind`` per file):
    the same answer ``bucket`` gives for the stack py-spy would sample there."""
    mongo = False
    inner = frame
    while frame is not None:
        filename = frame.f_code.co_filename
        kind = kinds.get(filename, "?")
        if kind == "?":
            kind = kinds[filename] = _kind(filename)
        if kind == "mongo":
            mongo = True
        elif kind == "sqs":
            while inner is not None:  # which SQS call: one of its frames is named for it
                if "receive" in inner.f_code.co_name:
                    return "receive"
                inner = inner.f_back
            return "delete"
        elif kind is not None:
            return kind
        frame = frame.f_back
    return "lookup" if mongo else "loop"


def _function(frame: FrameType, event: str, arg: Any) -> str:
    """The function a profile event calls: ``worker/lanes.py:Lanes._post``, or ``C:dict.get``."""
    if event == "call":
        code = frame.f_code
        return f"{'/'.join(Path(code.co_filename).parts[-2:])}:{code.co_qualname}"
    return f"C:{getattr(arg, '__qualname__', type(arg).__name__)}"


def run_counted_worker(argv: list[str]) -> None:
    """``python -m fanout ARGV`` counting its calls per bucket and function (``bucket<TAB>function``)
    between SIGUSR1 and SIGUSR2. Each signal is answered by a line appended to ``$FANOUT_CALLS_OUT``:
    ``start``, then the count as JSON."""
    counts: Counter[str] = Counter()
    kinds: dict[str, str | None] = {}
    out = Path(os.environ["FANOUT_CALLS_OUT"])
    on = [False]

    def count(frame: FrameType, event: str, arg: Any) -> None:
        if on[0] and (event == "call" or event == "c_call"):
            counts[f"{frame_bucket(frame, kinds)}\t{_function(frame, event, arg)}"] += 1

    def start(*_: Any) -> None:
        counts.clear()
        on[0] = True
        with out.open("a") as f:
            f.write("start\n")

    def stop(*_: Any) -> None:
        on[0] = False
        with out.open("a") as f:
            f.write(json.dumps(counts) + "\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["fanout", *argv]
    # Set from the start: a profile function set later, from a signal handler, does not reach the frames
    # already running (the event loop's), so it is always on and counts only between the signals.
    sys.setprofile(count)
    runpy.run_module("fanout", run_name="__main__", alter_sys=True)


async def count_calls(rig: Rig, phases_to_run: list[tuple[int, int]]) -> list[tuple[int, int, Counter[str]]]:
    """Each (fan-out, posts) phase with a worker counting its calls: (fan-out, posts, calls per bucket)."""
    assert rig.stack is not None
    assert rig.stack.worker is not None
    part = rig.stack.worker
    if part.process is not None and part.process.poll() is None:
        part.process.terminate()
        part.process.wait(30)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "calls.jsonl"
        env = {**rig.stack.env, "FANOUT_CALLS_OUT": str(out)}
        argv = [sys.executable, __file__, "--counted-worker", "worker", "--processes", "1"]
        part.process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        for _ in range(300):  # the count slows its start-up too
            if part.ready() or part.process.poll() is not None:
                break
            await asyncio.sleep(0.2)
        if not part.ready():
            raise RuntimeError("the counting worker did not start (run it with --counted-worker to see why)")
        worker = part.process

        async def tell(sig: signal.Signals) -> str:
            """Signal the worker and wait for its answer: signals pending together are handled in the
            order of their numbers, so a stop must be answered before the next start is sent."""
            lines = len(out.read_text().splitlines()) if out.exists() else 0
            os.kill(worker.pid, sig)
            for _ in range(200):
                if out.exists() and len(answers := out.read_text().splitlines()) > lines:
                    return answers[-1]
                await asyncio.sleep(0.05)
            raise RuntimeError(f"the counting worker did not answer {sig.name}")

        found: list[tuple[int, int, Counter[str]]] = []
        async with phases.open_feed(rig) as feed:
            await phases.throughput(rig, feed, 1, 200)  # warm-up
            for fanout, posts in phases_to_run:
                await tell(signal.SIGUSR1)
                result = await phases.throughput(rig, feed, fanout, posts)
                found.append((fanout, result.posts, Counter(json.loads(await tell(signal.SIGUSR2)))))
                print(f"fan-out {fanout}: {result.posts} posts counted", file=sys.stderr)
        worker.terminate()
        worker.wait(30)
    return found


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
        if self.spy is None:  # --count: the worker is the stack's
            return super().worker_pid
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
    return result.worker_cpu_us_per_event or 0.0, breakdown(out)


async def main(args: argparse.Namespace) -> None:
    rig = ProfiledRig(replace(QUICK, users=200), echo=lambda line: print(line, file=sys.stderr))
    rig.start()
    try:
        await rig.connect(rig.users)
        if args.count:
            print("Python calls per event (fan-out 1) or per post (fan-out 20), by bucket")
            print(f"{'fan-out':>8} {'calls':>7}  " + "  ".join(f"{b:>9}" for b in BUCKETS))
            detail: dict[int, dict[str, float]] = {}
            for fanout, posts, counts in await count_calls(rig, [(1, args.posts), (20, 3 * args.posts)]):
                per = max(1, posts // fanout) if fanout == 1 else max(1, posts)
                buckets: Counter[str] = Counter()
                for key, n in counts.items():
                    buckets[key.partition("\t")[0]] += n
                row = "  ".join(f"{buckets[b] / per:>9.1f}" for b in BUCKETS)
                print(f"{fanout:>8} {sum(counts.values()) / per:>7.0f}  {row}")
                detail[fanout] = {k: round(n / per, 2) for k, n in counts.most_common()}
            if args.detail:
                await asyncio.to_thread(Path(args.detail).write_text, json.dumps(detail, indent=1) + "\n")
                print(f"calls per event (per post at fan-out 20) by bucket and function: {args.detail}")
            return
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
    if sys.argv[1:2] == ["--counted-worker"]:  # the worker ``--count`` starts
        run_counted_worker(sys.argv[2:])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000, help="posts per fan-out (default 3000)")
    parser.add_argument("--raw", help="keep py-spy's raw samples in this directory (f1.txt, f2.txt)")
    parser.add_argument("--log-level", default="INFO", help="the worker's FANOUT_LOG_LEVEL (default INFO)")
    parser.add_argument(
        "--count", action="store_true", help="count calls per event by bucket (fan-out 1 and 20), no py-spy"
    )
    parser.add_argument(
        "--detail",
        metavar="PATH",
        help="with --count: write the calls per event by bucket and function to this JSON file",
    )
    asyncio.run(main(parser.parse_args()))
