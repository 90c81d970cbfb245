"""What subscribers see: their events as an async iterator, the connect URL, and resync notices."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

Frame = dict[str, Any]
UrlBuilder = Callable[[], Awaitable[str]]


class _Owner(Protocol):
    async def unsubscribe(self, sub: Subscription) -> None: ...


def token_url(base: str, token: Callable[[], str | Awaitable[str]]) -> UrlBuilder:
    """A URL builder that puts a fresh token in the query string on every connect."""

    async def build() -> str:
        value = token()
        if inspect.isawaitable(value):
            value = await value
        return f"{base}?{urlencode({'token': value})}"

    return build


@dataclass(frozen=True, slots=True)
class Resync:
    """What the application must refetch from GraphQL: each key (its position is now the given ``seq``)
    and, with ``events``, whatever has no key."""

    keys: dict[str, int]
    events: bool = False


class RequestFailed(ConnectionError):
    """A frame got no answer: the connection dropped or the answer did not come in time."""


class Subscription:
    """One subscriber's events (those of its types, or all), as an async iterator."""

    def __init__(self, client: _Owner, topics: tuple[str, ...], types: tuple[str, ...]) -> None:
        self.topics = topics
        self.types = types
        self._client = client
        self._queue: asyncio.Queue[Frame] = asyncio.Queue()

    def matches(self, frame: Frame) -> bool:
        kind = str(frame.get("type", ""))
        return not self.types or any(kind == t or kind.startswith(f"{t}.") for t in self.types)

    def put(self, frame: Frame) -> None:
        self._queue.put_nowait(frame)

    async def get(self) -> Frame:
        """The next event (wrap in ``asyncio.timeout`` to bound the wait)."""
        return await self._queue.get()

    def pending(self) -> int:
        """Events handed on and not taken yet."""
        return self._queue.qsize()

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self

    async def __anext__(self) -> Frame:
        return await self._queue.get()

    async def close(self) -> None:
        await self._client.unsubscribe(self)
