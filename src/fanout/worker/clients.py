"""The clients a worker process opens once and shares: SQS, MongoDB and the management API."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import botocore.session
from aiobotocore.config import AioConfig
from botocore.credentials import Credentials
from pymongo import AsyncMongoClient

from fanout.config import Settings, aio_session, pinned
from fanout.errors import ConfigError
from fanout.gateway.client import ManagementClient
from fanout.gateway.http import HttpClient
from fanout.gateway.sigv4 import Signer
from fanout.history import History
from fanout.store import ConnectionStore, SkipHook, mongo_client
from fanout.worker.sqs_client import SqsClient


@dataclass
class Clients:
    """What one worker process talks to; closed by the exit stack that opened them."""

    sqs: Any  # aiobotocore: queue URLs, sends, attributes
    hot: SqsClient  # the worker's own client: receive, delete, change visibility
    mongo: AsyncMongoClient[dict[str, Any]]
    store: ConnectionStore
    management: ManagementClient
    history: History


def credentials(settings: Settings) -> Any:
    """Credentials for SigV4: botocore's provider chain (task role on ECS), dummy ones locally."""
    kwargs = settings.aws_client_kwargs()
    if "aws_access_key_id" in kwargs:
        return Credentials(kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"])
    creds = pinned(botocore.session.get_session(), settings).get_credentials()  # an assumed role's STS too
    if creds is None:
        raise ConfigError("no AWS credentials found for signing @connections requests")
    return creds


async def open_clients(stack: AsyncExitStack, settings: Settings, on_skip: SkipHook | None = None) -> Clients:
    """Open every client on ``stack``; nothing is contacted yet (the worker connects with retries)."""
    s = settings
    config = AioConfig(
        read_timeout=s.receive_wait_s + 10,
        connect_timeout=5,
        max_pool_connections=s.pollers + 8,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    sqs = await stack.enter_async_context(aio_session(s).create_client("sqs", **s.aws_client_kwargs(config)))
    endpoint = s.sqs_endpoint() or f"https://sqs.{s.region}.amazonaws.com"
    hot = SqsClient(
        Signer(credentials(s), s.region, service="sqs"),
        endpoint,
        timeout_s=10,
        poll_timeout_s=s.receive_wait_s + 10,
    )
    stack.push_async_callback(hot.close)
    mongo = mongo_client(s)
    stack.push_async_callback(mongo.close)
    store = ConnectionStore.from_client(mongo, s.mongo_db, s.connections_collection, on_skip)
    http = HttpClient(timeout_s=s.post_timeout_s)  # connections: at most one per lane
    stack.push_async_callback(http.close)
    management = ManagementClient(
        http,
        Signer(credentials(s), s.region),
        region=s.region,
        dev=s.is_dev,
        api_ids=s.api_ids,
        endpoint_override=s.management_endpoint,
    )
    return Clients(sqs, hot, mongo, store, management, History(store.database, s))
