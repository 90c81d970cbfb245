"""The ``fanout`` command line: arguments -> Settings -> run. Settings come from ``FANOUT_*`` variables."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ValidationError

from fanout import logging as fanout_logging
from fanout.config import Settings
from fanout.errors import ConfigError, FanoutError, InvalidMessage

EPILOG = """With no settings at all, every command targets the local stack that `fanout dev` starts.
Settings are environment variables prefixed FANOUT_ (see the README's Configuration section)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fanout",
        description="Fan out real-time events from SQS/SNS to API Gateway WebSocket connections.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    t = sub.add_parser("token", help="print a signed development token for the local gateway")
    t.add_argument("user_id")
    t.add_argument("--ttl", type=int, default=3600, help="seconds the token stays valid (default 3600)")

    tk = sub.add_parser(
        "ticket",
        help="print a single-use connection ticket for a user (needs MongoDB)",
        description="Mint a connection ticket: valid once, for FANOUT_TICKET_TTL_S seconds (at most 60); "
        "connect with ?ticket=… . MongoDB keeps only its hash.",
    )
    tk.add_argument("user_id")
    tk.add_argument("--ttl", type=int, default=None, help="seconds it stays valid, 1 to 60")

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

    dlq = sub.add_parser("dlq", help="inspect or redrive the dead-letter queue")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    ins = dlq_sub.add_parser("inspect", help="list dead-lettered messages and why, without removing them")
    ins.add_argument("--max", type=int, default=50, help="messages to show at most (default 50)")
    red = dlq_sub.add_parser("redrive", help="move dead-lettered messages back to the queue")
    red.add_argument("--reason", default=None, help="only messages dead-lettered for this reason")
    red.add_argument("--max", type=int, default=1000, help="messages to move at most (default 1000)")

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
    return p


def _fail(message: str, code: int = 2) -> int:
    print(f"fanout: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        return _fail(f"bad setting FANOUT_{str(first['loc'][0]).upper()}: {first['msg']}")
    fanout_logging.configure(settings.log_level, settings.log_format or "console")
    try:
        if args.command in _DEV_ONLY and not settings.is_dev:
            raise ConfigError(f"`fanout {args.command}` is for the local stack only (FANOUT_ENV=dev)")
        needs = _NEEDS.get(args.command, ())
        settings.require(needs)
        if needs:
            from fanout import secrets

            settings = secrets.load(settings)
        return int(_COMMANDS[args.command](args, settings) or 0)
    except ConfigError as exc:
        return _fail(str(exc))
    except InvalidMessage as exc:
        return _fail(f"invalid event ({exc.reason}): {exc.detail}")
    except FanoutError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def _interrupt(*_: object) -> None:
    """The first SIGINT/SIGTERM stops the stack; later ones (make run's trap sends SIGTERM after Ctrl-C)
    are ignored, so they cannot cut the ordered stop short."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.local.stack import LocalStack

    stack = LocalStack(settings, worker=not args.no_worker, demo=not args.no_demo)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
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
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        print("fanout dev: stopping", flush=True)
        stack.stop()
        print("fanout dev: stopped", flush=True)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    processes = args.processes or os.cpu_count() or 1
    if processes < 1:
        return _fail("--processes must be at least 1")
    if processes == 1:
        from fanout.worker.consumer import Worker

        asyncio.run(Worker(settings).main())
        return 0
    from fanout.worker.pool import Pool

    return asyncio.run(Pool(settings, processes).main())


def _relay(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.outbox.relay import main as relay_main

    return asyncio.run(relay_main(settings))


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
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
    asyncio.run(serve(settings, faults))
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.publish import Publisher, build_event

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        return _fail(f"--payload is not JSON: {exc}")
    if not isinstance(payload, dict):
        return _fail('--payload must be a JSON object, e.g. \'{"title":"hi"}\'')
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
    except Exception as exc:
        return _fail(f"could not publish to {settings.sqs_endpoint() or 'AWS'}: {exc}", 1)
    print(body.id)
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from fanout.tokens import sign

    print(sign(args.user_id, settings.jwt_key(), args.ttl, settings.jwt_audience))
    return 0


def _ticket(args: argparse.Namespace, settings: Settings) -> int:
    from pymongo.errors import PyMongoError

    from fanout.tickets import mint

    try:
        print(mint(args.user_id, settings=settings, ttl_s=args.ttl))
    except ValueError as exc:
        return _fail(str(exc))
    except PyMongoError as exc:
        return _fail(f"MongoDB did not answer: {type(exc).__name__}", 1)
    return 0


def _schema(args: argparse.Namespace, settings: Settings) -> int:
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
    else:
        Path(args.out).write_text(text)
    return 0


def _flags(args: argparse.Namespace, settings: Settings) -> int:
    from pymongo.errors import PyMongoError

    from fanout.catalog import KNOWN_TYPES
    from fanout.flags import FlagStore, check_key
    from fanout.store import mongo_client

    if args.flags_command != "list":
        try:
            check_key(args.key)
        except ValueError as exc:
            return _fail(str(exc))

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
        return _fail(f"MongoDB did not answer ({type(exc).__name__}); is FANOUT_MONGO_URI right?", 1)


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from fanout import dlq

    if args.dlq_command == "inspect":
        return dlq.inspect(settings, args.max)
    return dlq.redrive(settings, args.max, args.reason)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from fanout.bench import run

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    return run(mode, Path(args.json), args.soak_s)


#: Commands that only make sense against the local stack.
_DEV_ONLY = frozenset({"dev", "gateway", "bench"})
#: What each command needs that production cannot default (checked once, before it runs).
_NEEDS: dict[str, tuple[Literal["queue", "mongo", "jwt"], ...]] = {
    "worker": ("queue", "mongo"),
    "flags": ("mongo",),
    "relay": ("queue", "mongo"),
    "token": ("jwt",),
    "ticket": ("mongo",),
}

_COMMANDS: dict[str, Any] = {
    "bench": _bench,
    "dev": _dev,
    "worker": _worker,
    "relay": _relay,
    "gateway": _gateway,
    "publish": _publish,
    "token": _token,
    "ticket": _ticket,
    "schema": _schema,
    "dlq": _dlq,
    "flags": _flags,
}
