"""The AWS Lambda entry point: clients are built once per container and reused across invocations."""

from __future__ import annotations

import asyncio
import os

from fanout import secrets
from fanout.config import Settings
from fanout.errors import ConfigError
from fanout.lifecycle.handler import Lifecycle
from fanout.lifecycle.replies import Event, Response
from fanout.store import ConnectionStore, mongo_client

_loop: asyncio.AbstractEventLoop | None = None
_lifecycle: Lifecycle | None = None


def deployed_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings for a deployed handler: never development mode, never the development key, whatever
    else is set; secrets named by ARN are read from Secrets Manager."""
    environ = dict(os.environ if environ is None else environ)
    settings = Settings()
    if "AWS_LAMBDA_FUNCTION_NAME" in environ and settings.is_dev:
        raise ConfigError("a deployed lifecycle handler refuses FANOUT_ENV=dev")
    settings.require(("mongo", "jwt"))
    return secrets.load(settings)


def lambda_handler(event: Event, context: object) -> Response:
    """Route one API Gateway WebSocket event (``$request.body.action`` route selection)."""
    global _loop, _lifecycle
    if _loop is None or _lifecycle is None:
        settings = deployed_settings()
        _loop = asyncio.new_event_loop()
        store = ConnectionStore.from_client(
            mongo_client(settings), settings.mongo_db, settings.connections_collection
        )
        _lifecycle = Lifecycle(store, settings)
    return _loop.run_until_complete(_lifecycle.handle(event))
