"""The long-running production processes: ``worker`` (the pool, or one process) and ``relay`` (the
transactional outbox to the queue)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from fanout.cli.common import fail
from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_worker(sub: Subparsers) -> None:
    """The ``worker`` command's arguments and help."""
    w = sub.add_parser(
        "worker",
        help="run the worker pool (the production entry point)",
        description="Consume events from SQS and push them to every target connection.",
    )
    w.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes to supervise (default: the number of CPUs)",
    )


def add_relay(sub: Subparsers) -> None:
    """The ``relay`` command's arguments and help."""
    sub.add_parser(
        "relay",
        help="move events from the MongoDB outbox to the queue (one active relay per outbox)",
        description="Send the entries of the transactional outbox (FANOUT_OUTBOX_DB, default "
        "FANOUT_MONGO_DB; collection FANOUT_OUTBOX_COLLECTION) to the events queue in insertion order, "
        "in batches of up to 10, and mark each batch relayed. Run several for availability: a lease in "
        "MongoDB (FANOUT_RELAY_LEASE_S) lets exactly one send, and another takes over when it expires. "
        "New entries arrive through a change stream, or by polling every FANOUT_RELAY_POLL_S where the "
        "server has none. Metrics and health on FANOUT_METRICS_HOST:FANOUT_METRICS_PORT. SIGTERM stops "
        "after the batch in flight and gives the lease up. The worker can run it instead "
        "(FANOUT_RELAY=true).",
    )


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run one worker process, or supervise a pool of them."""
    processes = args.processes if args.processes is not None else os.cpu_count() or 1
    if processes < 1:
        return fail("--processes must be at least 1")
    if processes == 1:
        from fanout.worker.consumer import Worker

        asyncio.run(Worker(settings).main())
        return 0
    from fanout.worker.pool import Pool

    return asyncio.run(Pool(settings, processes).main())


def run_relay(args: argparse.Namespace, settings: Settings) -> int:
    """Run the outbox relay until SIGTERM."""
    from fanout.outbox.relay import main as relay_main

    return asyncio.run(relay_main(settings))
