"""``fanout flags``: switch a domain or an event type off and on at run time (switches in MongoDB)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from fanout.cli.common import fail
from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_flags(sub: Subparsers) -> None:
    """The ``flags`` command's arguments and help."""
    fl = sub.add_parser(
        "flags",
        help="switch a domain or event type off and on at run time",
        description="Switches live in MongoDB (FANOUT_FLAGS_COLLECTION); every worker picks a change up "
        "within a few seconds. A switched-off event is counted as outcome=disabled and deleted. The most "
        "specific key wins: `chat off` plus `chat.message on` delivers only chat.message.",
    )
    fl_sub = fl.add_subparsers(dest="flags_command", required=True, metavar="ACTION")
    fl_set = fl_sub.add_parser("set", help="switch KEY on or off, e.g. `fanout flags set chat off`")
    fl_set.add_argument("key", help="a domain (chat), a type prefix (chat.typing) or a type (chat.message)")
    fl_set.add_argument("state", choices=["on", "off"])
    fl_clear = fl_sub.add_parser("clear", help="forget KEY's switch: the less specific key decides again")
    fl_clear.add_argument("key")
    fl_sub.add_parser("list", help="show every switch")


def run_flags(args: argparse.Namespace, settings: Settings) -> int:
    """Set, clear or list the run-time switches."""
    from pymongo.errors import PyMongoError

    from fanout.catalog import KNOWN_TYPES
    from fanout.flags import FlagStore, check_key
    from fanout.store import mongo_client

    if args.flags_command != "list":
        try:
            check_key(args.key)
        except ValueError as exc:
            return fail(str(exc))

    async def run() -> int:
        client = mongo_client(settings)
        try:
            store = FlagStore.from_client(client, settings.mongo_db, settings.flags_collection)
            if args.flags_command == "set":
                await store.set(args.key, args.state == "on")
                if not any(t == args.key or t.startswith(args.key + ".") for t in KNOWN_TYPES):
                    print(
                        f"note: no catalogued type is {args.key} or starts with {args.key}.", file=sys.stderr
                    )
                print(f"{args.key} {args.state}; workers apply it within a few seconds")
            elif args.flags_command == "clear":
                gone = await store.clear(args.key)
                print(f"{args.key} cleared" if gone else f"{args.key} had no switch")
            else:
                flags = await store.flags()
                for flag in flags:
                    when = flag.updated_at.isoformat(timespec="seconds") if flag.updated_at else "-"
                    print(f"{flag.key:<32} {'on' if flag.enabled else 'off':<4} {when}")
                if not flags:
                    print("no switches: every domain is on")
            return 0
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except PyMongoError as exc:
        return fail(f"MongoDB did not answer ({type(exc).__name__}); is FANOUT_MONGO_URI right?", 1)
