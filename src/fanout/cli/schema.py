"""``fanout schema``: the event catalog as JSON Schema, or as TypeScript declarations."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from fanout.cli.common import fail
from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_schema(sub: Subparsers) -> None:
    """The ``schema`` command's arguments and help."""
    sch = sub.add_parser(
        "schema",
        help="print the event catalog as JSON Schema, or write its TypeScript types",
        description="Print the JSON Schemas of the queue body, the client envelope and every catalogued "
        "payload (with its type, version and delivery policy). With --typescript, write TypeScript "
        "declarations of every payload and the typed client envelope, made by json-schema-to-typescript "
        "(needs Node.js 20+ and npm; the pinned generator is installed once into ~/.cache/fanout).",
    )
    sch.add_argument("--typescript", action="store_true", help="write TypeScript declarations instead")
    sch.add_argument("--out", default=None, metavar="PATH", help="write to PATH instead of stdout")


def run_schema(args: argparse.Namespace, settings: Settings) -> int:
    """Print or write the catalog's JSON Schemas, or its TypeScript declarations."""
    from pathlib import Path

    if args.typescript:
        from fanout.catalog.typescript import generate

        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fanout"
        text = generate(cache)
    else:
        from fanout.catalog.export import catalog_document

        text = json.dumps(catalog_document(), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text)
    except OSError as exc:  # no such directory, a directory, no permission: one line, no traceback
        return fail(f"cannot write --out {args.out}: {exc.strerror or type(exc).__name__}")
    return 0
