"""The AWS Lambda entry point: clients are built once per container and reused across invocations.

No exception leaves ``lambda_handler``: a handler that raises is answered 500 by ``Lifecycle.handle``, and a
container that cannot start (a secret unreadable, a bad setting) answers 500 too and tries again on the
next invocation. Either counts a route error. With ``FANOUT_CLOUDWATCH_EMF`` the lifecycle's counters are
printed as one EMF line at the end of an invocation that counted something.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from prometheus_client import CollectorRegistry

from fanout import config, secrets
from fanout import logging as fanout_logging
from fanout.config import Settings
from fanout.emf import LifecycleEmfEmitter
from fanout.errors import ConfigError
from fanout.inbound import InboundQueue
from fanout.lifecycle.handler import Lifecycle, failure
from fanout.lifecycle.metrics import LifecycleMetrics, route_label
from fanout.lifecycle.replies import Event, Response
from fanout.logging import get_logger
from fanout.store import ConnectionStore, mongo_client

log = get_logger("fanout.lifecycle")

_loop: asyncio.AbstractEventLoop | None = None
_lifecycle: Lifecycle | None = None
# Counted from the first invocation of the container, a failed start included.
_metrics = LifecycleMetrics(CollectorRegistry())
_emf: LifecycleEmfEmitter | None = None
_emf_checked = False
_logs_configured = False


def deployed_settings(environ: dict[str, str] | None = None, secrets_client: Any = None) -> Settings:
    """Settings for a deployed handler: never development mode, never the development key, whatever
    else is set; secrets named by ARN are read from Secrets Manager (through ``secrets_client`` when a
    test gives one: production settings reach no local endpoint)."""
    environ = dict(os.environ if environ is None else environ)
    settings = config.load()
    config.warn_unknown()
    if "AWS_LAMBDA_FUNCTION_NAME" in environ and settings.is_dev:
        raise ConfigError("a deployed lifecycle handler refuses FANOUT_ENV=dev")
    config.pin_aws_endpoints(settings)
    settings.require(("mongo", "jwt"))
    return secrets.load(settings, secrets_client)


def _started(inbound: InboundQueue | None = None) -> tuple[asyncio.AbstractEventLoop, Lifecycle]:
    """The container's loop and lifecycle, built on first use; ``inbound`` is a test's own queue."""
    global _loop, _lifecycle
    if _loop is None or _lifecycle is None:
        settings = deployed_settings()
        store = ConnectionStore.from_client(
            mongo_client(settings), settings.mongo_db, settings.connections_collection
        )
        lifecycle = Lifecycle(store, settings, inbound=inbound, metrics=_metrics)
        _loop, _lifecycle = asyncio.new_event_loop(), lifecycle
    return _loop, _lifecycle


def _configure_logs() -> None:
    """The worker's log pipeline (JSON, redaction) for the container's lines, set up on its first
    invocation; a container whose settings are bad logs why in JSON at INFO."""
    global _logs_configured
    if _logs_configured:
        return
    _logs_configured = True
    level, fmt = "INFO", "json"
    try:
        s = Settings()
        level, fmt = s.log_level, s.log_format or fmt
    except ValueError:  # a bad setting: the start fails and says so
        pass
    # The process's own stderr, which Lambda collects: loggers keep the stream they first wrote to.
    fanout_logging.configure(level, fmt, sys.__stderr__)


def _emitter() -> LifecycleEmfEmitter | None:
    """The EMF emitter when ``FANOUT_CLOUDWATCH_EMF`` is on; read once, without the secrets."""
    global _emf, _emf_checked
    if not _emf_checked:
        _emf_checked = True
        try:
            s = Settings()
        except ValueError:  # a bad setting: the start fails and says so; no EMF meanwhile
            return None
        if s.cloudwatch_emf:
            _emf = LifecycleEmfEmitter(_metrics.registry, namespace=s.cloudwatch_namespace)
    return _emf


def lambda_handler(event: Event, context: object) -> Response:
    """Route one API Gateway WebSocket event (``$request.body.action`` route selection)."""
    if not isinstance(event, dict):
        return {"statusCode": 400, "body": "Bad Request"}
    _configure_logs()
    try:
        try:
            loop, lifecycle = _started()
        except Exception as exc:  # cannot start: answer, count, and try again on the next invocation
            context_ = event.get("requestContext")
            route = context_.get("routeKey") if isinstance(context_, dict) else None
            _metrics.route_error(route)
            log.error(
                "lifecycle_start_failed", route=route_label(route), error=type(exc).__name__, exc_info=exc
            )
            return failure(route)
        return loop.run_until_complete(lifecycle.handle(event))
    finally:
        emitter = _emitter()
        if emitter is not None:
            emitter.flush()
