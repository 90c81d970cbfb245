"""The reference client of fanout (asyncio, aiohttp): the tests, the demo and the benchmark use it.

One ``FanoutClient`` per process, shared by its subscribers::

    async with FanoutClient(token_url("wss://ws.example.com/prod", get_token)) as client:
        sub = await client.subscribe(["conversation:c9"], types=["chat.message"])
        async for event in sub:
            ...

What it stores, what it sends on reconnect and how it drops duplicates: docs/client.md.
"""

from fanout.client.backoff import Backoff
from fanout.client.connection import FanoutClient
from fanout.client.dedupe import RecentIds
from fanout.client.reorder import Reorderer
from fanout.client.subscription import RequestFailed, Resync, Subscription, UrlBuilder, token_url

__all__ = [
    "Backoff",
    "FanoutClient",
    "RecentIds",
    "Reorderer",
    "RequestFailed",
    "Resync",
    "Subscription",
    "UrlBuilder",
    "token_url",
]
