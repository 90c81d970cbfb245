#!/usr/bin/env python3
"""The CDK app: one ``FanoutStack`` with the whole real-time layer (the WebSocket API, its lifecycle Lambda
and the worker), or the worker alone with ``-c apiId=...``. Run by the cdk CLI from ``deploy/`` (see
cdk.json), or directly:

    python deploy/app.py [-c key=value ...] [--outdir DIR]

Run directly, it reads cdk.json's context as the CLI would and writes the cloud assembly (the CloudFormation
template ``<stackName>.template.json`` and the assets) to ``deploy/cdk.out``. No AWS account or Docker is
needed to synth: the Lambda's code is bundled by pip from this interpreter (see fanout_cdk/bundling.py).

Run by the cdk CLI (``cdk synth``, ``diff``, ``deploy``) the synth is a production one: a placeholder secret
ARN (account 123456789012, the defaults) is refused with one line; run directly it is a synth warning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fanout_stack import FanoutStack  # noqa: E402 - after the path set-up above

DEFAULT_STACK_NAME = "Fanout"


def run_by_cdk_cli() -> bool:
    """The cdk CLI runs the app (synth, diff, deploy) with these set; ``make deploy-synth`` does not."""
    return "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ


def build_app(
    context: dict[str, Any] | None = None, outdir: str | None = None, *, deploying: bool | None = None
) -> tuple[cdk.App, FanoutStack]:
    """The app and its stack; ``context`` is added to cdk.json's when not run by the CLI. ``deploying``
    (default: run by the cdk CLI) refuses placeholder secret ARNs instead of warning about them."""
    if run_by_cdk_cli():
        app = cdk.App()
    else:
        merged = {"aws:cdk:disable-stack-trace": True}
        merged |= json.loads((HERE / "cdk.json").read_text())["context"] | (context or {})
        app = cdk.App(context=merged, outdir=outdir)
    account, region = app.node.try_get_context("account"), app.node.try_get_context("region")
    env = cdk.Environment(account=account, region=region) if account or region else None
    stack_name = app.node.try_get_context("stackName") or DEFAULT_STACK_NAME
    stack = FanoutStack(
        app,
        stack_name,
        deploying=run_by_cdk_cli() if deploying is None else deploying,
        env=env,
        description="fanout: SQS/SNS events fanned out to API Gateway WebSocket connections by ECS workers"
        + ("" if app.node.try_get_context("apiId") else ", the WebSocket API and its lifecycle Lambda"),
    )
    cdk.Tags.of(stack).add("service", "fanout")
    return app, stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--outdir", default=str(HERE / "cdk.out"))
    args = parser.parse_args(argv)
    context: dict[str, Any] = {}
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-c expects KEY=VALUE, got {item!r}")
        context[key] = value
    cli = run_by_cdk_cli()
    try:
        app, stack = build_app(context, None if cli else args.outdir)
    except ValueError as exc:  # a malformed, missing or placeholder parameter: one line, no traceback
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    assembly = app.synth()
    if not cli:  # the cdk CLI prints these itself
        for message in assembly.get_stack_artifact(stack.artifact_id).messages:
            print(f"{message.level.value.lower()}: {message.id}: {message.entry.data}", file=sys.stderr)
        print(Path(assembly.directory) / stack.template_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
