"""``fanout dlq``: inspect the dead-letter queue, or redrive its messages to the events queue."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_dlq(sub: Subparsers) -> None:
    """The ``dlq`` command's arguments and help."""
    dlq = sub.add_parser("dlq", help="inspect or redrive the dead-letter queue")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    ins = dlq_sub.add_parser("inspect", help="list dead-lettered messages and why, without removing them")
    ins.add_argument("--max", type=int, default=50, help="messages to show at most (default 50)")
    red = dlq_sub.add_parser("redrive", help="move dead-lettered messages back to the queue")
    red.add_argument("--reason", default=None, help="only messages dead-lettered for this reason")
    red.add_argument("--max", type=int, default=1000, help="messages to move at most (default 1000)")


def run_dlq(args: argparse.Namespace, settings: Settings) -> int:
    """Inspect or redrive the dead-letter queue."""
    from botocore.exceptions import BotoCoreError, ClientError

    from fanout import dlq
    from fanout.cli.common import fail

    if args.max < 1:  # SQS is never asked: a negative --max moved nothing and exited 0
        return fail("--max must be at least 1")
    try:
        if args.dlq_command == "inspect":
            return dlq.inspect(settings, args.max)
        return dlq.redrive(settings, args.max, args.reason)
    except (BotoCoreError, ClientError) as exc:  # unreachable, throttled, refused: one line, no traceback
        return fail(f"SQS: {str(exc)[:300]}", 1)
