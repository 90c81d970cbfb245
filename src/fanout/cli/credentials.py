"""What a client connects with: ``token`` (a signed development token) and ``ticket`` (a single-use
connection ticket kept in MongoDB)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fanout.cli.common import fail
from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_token(sub: Subparsers) -> None:
    """The ``token`` command's arguments and help."""
    t = sub.add_parser("token", help="print a signed development token for the local gateway")
    t.add_argument("user_id")
    t.add_argument(
        "--ttl", type=int, default=3600, help="seconds the token stays valid, 1 to 86400 (default 3600)"
    )


def add_ticket(sub: Subparsers) -> None:
    """The ``ticket`` command's arguments and help."""
    tk = sub.add_parser(
        "ticket",
        help="print a single-use connection ticket for a user (needs MongoDB)",
        description="Mint a connection ticket: valid once, for FANOUT_TICKET_TTL_S seconds (at most 60); "
        "connect with ?ticket=… . MongoDB keeps only its hash.",
    )
    tk.add_argument("user_id")
    tk.add_argument("--ttl", type=int, default=None, help="seconds it stays valid, 1 to 60")


def run_token(args: argparse.Namespace, settings: Settings) -> int:
    """Print a signed development token."""
    from fanout.tokens import MAX_TOKEN_TTL_S, MAX_USER_ID_CHARS, sign

    # what $connect would refuse is not printed: it could only ever be answered 401
    if not 0 < len(args.user_id) <= MAX_USER_ID_CHARS:
        return fail(f"a token's user id is 1 to {MAX_USER_ID_CHARS} characters")
    if not 0 < args.ttl <= MAX_TOKEN_TTL_S:  # and one it would take for longer than a day is not either
        return fail(f"a token lives 1 to {MAX_TOKEN_TTL_S} seconds (--ttl)")
    print(sign(args.user_id, settings.jwt_key(), args.ttl, settings.jwt_audience))
    return 0


def run_ticket(args: argparse.Namespace, settings: Settings) -> int:
    """Mint a single-use connection ticket and print it."""
    from pymongo.errors import PyMongoError

    from fanout.tickets import mint

    try:
        print(mint(args.user_id, settings=settings, ttl_s=args.ttl))
    except ValueError as exc:
        return fail(str(exc))
    except PyMongoError as exc:
        return fail(f"MongoDB did not answer: {type(exc).__name__}", 1)
    return 0
