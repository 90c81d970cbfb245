"""The commands that run the local stack, for development only: ``dev`` (everything) and ``gateway``
(the API Gateway emulator alone). They import ``fanout.local`` only when they run."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import TYPE_CHECKING

from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_dev(sub: Subparsers) -> None:
    """The ``dev`` command's arguments and help."""
    dev = sub.add_parser(
        "dev",
        help="start the local stack (SQS/SNS, MongoDB, gateway emulator, worker)",
        description="Start moto (SQS+SNS), SecantusDB, the gateway emulator and a worker, each as its "
        "own process; print the endpoints and a ready line; Ctrl-C stops them all.",
    )
    dev.add_argument(
        "--no-worker",
        action="store_true",
        help="start everything but the worker (run `fanout worker` yourself)",
    )
    dev.add_argument(
        "--no-demo",
        action="store_true",
        help="do not serve the demo page (FANOUT_DEMO_PORT)",
    )


def add_gateway(sub: Subparsers) -> None:
    """The ``gateway`` command's arguments and help."""
    g = sub.add_parser(
        "gateway",
        help="run the local API Gateway WebSocket emulator alone",
        description="A real WebSocket server with API Gateway's management API. Faults can "
        "also be changed at run time: PUT /_emulator/faults with a JSON object.",
    )
    for name, what in [
        ("throttle", "429 LimitExceededException"),
        ("error", "500 errors"),
        ("timeout", "posts that deliver and then hang"),
        ("drop", "sockets dropped without $disconnect"),
    ]:
        g.add_argument(
            f"--{name}", type=float, default=0.0, metavar="SHARE", help=f"share of posts answered with {what}"
        )
    g.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every post")


class _Interrupt:
    """The first SIGINT/SIGTERM stops the stack; later ones (make run's trap sends SIGTERM after Ctrl-C)
    are ignored, so they cannot cut the ordered stop short. Ignored by this handler rather than by
    ``SIG_IGN``: a signal that arrives while the handler is being swapped would otherwise be reported as
    "ignored due to race condition", with a traceback, on every Ctrl-C of ``make run``."""

    stopping = False

    def __call__(self, *_: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local stack and keep it running until Ctrl-C; 1 when a part of it exits."""
    from fanout.local.stack import LocalStack

    stack = LocalStack(settings, worker=not args.no_worker, demo=not args.no_demo)
    interrupt = _Interrupt()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    print("fanout dev: starting the local stack", flush=True)
    try:
        stack.start()
        print(
            f"fanout dev: ready (logs of moto and SecantusDB in {stack.log_dir}); Ctrl-C to stop", flush=True
        )
        while (failed := stack.failed()) is None:
            time.sleep(0.5)
        print(f"fanout dev: {failed.name} exited unexpectedly; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        interrupt.stopping = True
        print("fanout dev: stopping", flush=True)
        stack.stop()
        print("fanout dev: stopped", flush=True)


def run_gateway(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the gateway emulator alone, with the faults given, until stopped."""
    from pymongo.errors import PyMongoError

    from fanout.cli.common import fail
    from fanout.local.emulator import Faults, serve

    faults = Faults()
    faults.update(
        {
            "throttle": args.throttle,
            "error": args.error,
            "timeout": args.timeout,
            "drop": args.drop,
            "latency_ms": args.latency_ms,
        }
    )
    try:
        asyncio.run(serve(settings, faults))
    except PyMongoError as exc:  # it stores the connection records there: not running, or a wrong URI
        return fail(f"MongoDB did not answer ({type(exc).__name__}); is FANOUT_MONGO_URI right?", 1)
    return 0
