"""The ``fanout`` command line: arguments -> Settings -> run. Settings come from ``FANOUT_*`` variables.

One module per command group builds its commands' arguments (``add_*``) and runs them (``run_*``); each
imports what its command needs only when it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Literal

from fanout import config
from fanout import logging as fanout_logging
from fanout.cli import bench, credentials, dlq, flags, local, processes, publish, schema
from fanout.cli.common import Command, fail
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
    for add in (
        local.add_dev,
        processes.add_worker,
        processes.add_relay,
        local.add_gateway,
        publish.add_publish,
        credentials.add_token,
        credentials.add_ticket,
        schema.add_schema,
        flags.add_flags,
        dlq.add_dlq,
        bench.add_bench,
    ):
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load()
    except ConfigError as exc:
        return fail(str(exc))
    config.pin_aws_endpoints(settings)
    fanout_logging.configure(settings.log_level, settings.log_format or "console")
    config.warn_unknown()
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
        return fail(str(exc))
    except InvalidMessage as exc:
        return fail(f"invalid event ({exc.reason}): {exc.detail}")
    except FanoutError as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


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

_COMMANDS: dict[str, Command] = {
    "bench": bench.run_bench,
    "dev": local.run_dev,
    "worker": processes.run_worker,
    "relay": processes.run_relay,
    "gateway": local.run_gateway,
    "publish": publish.run_publish,
    "token": credentials.run_token,
    "ticket": credentials.run_ticket,
    "schema": schema.run_schema,
    "dlq": dlq.run_dlq,
    "flags": flags.run_flags,
}
