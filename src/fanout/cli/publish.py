"""``fanout publish``: validate one event from the command line and publish it to the queue or topic."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from fanout.cli.common import fail
from fanout.config import Settings

if TYPE_CHECKING:
    from fanout.cli.common import Subparsers


def add_publish(sub: Subparsers) -> None:
    """The ``publish`` command's arguments and help."""
    pub = sub.add_parser(
        "publish",
        help="publish one event; prints its id",
        description="Validate and publish one event to the queue (or topic). Exit code 2 on bad input.",
    )
    pub.add_argument("type", help="event type, <domain>.<name>[.<name>], e.g. notification.new")
    pub.add_argument("--user", action="append", default=[], metavar="ID", help="target user id (repeatable)")
    pub.add_argument("--topic", action="append", default=[], metavar="T", help="target topic (repeatable)")
    pub.add_argument("--broadcast", action="store_true", help="send to every live connection")
    pub.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="CONNECTION_ID",
        help="connection to leave out, e.g. the tab that caused the change (repeatable)",
    )
    pub.add_argument("--payload", default="{}", metavar="JSON", help="payload, a JSON object (default {})")
    pub.add_argument("--via", choices=["sqs", "sns"], default="sqs", help="publish to the queue or the topic")


def run_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Publish one event and print its id."""
    from fanout.errors import InvalidMessage
    from fanout.publish import Publisher, build_event

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        return fail(f"--payload is not JSON: {exc}")
    except RecursionError:  # nested deeper than the parser goes
        return fail("--payload is nested too deeply")
    if not isinstance(payload, dict):
        return fail('--payload must be a JSON object, e.g. \'{"title":"hi"}\'')
    body = build_event(
        args.type,
        user_ids=args.user,
        topics=args.topic,
        broadcast=args.broadcast,
        exclude_connection_ids=args.exclude,
        payload=payload,
    )
    try:
        publisher = Publisher(settings, via=args.via)
        publisher.send(body)
        publisher.close()
    except InvalidMessage:
        raise  # too large for the destination: bad input, exit 2 as for any invalid event
    except Exception as exc:
        return fail(f"could not publish to {settings.sqs_endpoint() or 'AWS'}: {exc}", 1)
    print(body.id)
    return 0
