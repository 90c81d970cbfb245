"""``fanout bench``: the benchmark against a local stack, for development only."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_bench(sub: Subparsers) -> None:
    """The ``bench`` command's arguments and help."""
    b = sub.add_parser(
        "bench",
        help="benchmark the worker against the inline design and the HTTP floor",
        description="Start a local stack on free ports with real WebSocket clients, measure "
        "throughput, CPU per post, latency and publish time beside the baselines; print a "
        "table and write a JSON file.",
    )
    size = b.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="small counts (under two minutes): checks the harness"
    )
    size.add_argument(
        "--smoke",
        action="store_true",
        help="the smallest counts, every phase once, soak and pool included: checks the harness only",
    )
    b.add_argument(
        "--json",
        default="bench/results/latest.json",
        metavar="PATH",
        help="where to write the results (default bench/results/latest.json)",
    )
    b.add_argument(
        "--soak-s",
        type=float,
        default=None,
        metavar="S",
        help="seconds of sustained load for the worker's RSS trend (full mode: 600, quick: none)",
    )


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark in the mode asked for."""
    from pathlib import Path

    from fanout.bench import run

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    return run(mode, Path(args.json), args.soak_s)
