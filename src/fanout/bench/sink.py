"""The benchmark's WebSocket clients, in their own process so their CPU never counts against anyone.

The parent drives it over a ``multiprocessing`` pipe: ``connect`` opens one real WebSocket connection
per user on the emulator, then every text frame that is an event is counted and its latency (arrival
against the event's ``sentAt``) recorded until the next ``reset``, also by event type.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from fanout.tokens import sign


class Sink:
    def __init__(self) -> None:
        self.total = 0
        self.last_at = 0.0
        self.latencies_ms: list[float] = []
        self.by_type: dict[str, list[float]] = {}  # event type -> latencies of its frames
        self.ids: dict[str, int] = {}
        self.track_ids = False
        self.repeats = 0  # frames a client got for an event it already had (with track_ids)
        self._had: list[set[str]] = []
        self.clients: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self._arrived = asyncio.Event()

    def frame(self, data: str, client: int = 0) -> None:
        now = time.time()
        doc = json.loads(data)
        event_id = doc.get("id")
        if event_id is None:  # a route reply such as ping.pong
            return
        if self.track_ids:
            had = self._had[client]
            self.repeats += event_id in had
            had.add(event_id)
        self.total += 1
        self.last_at = now
        latency = (now - datetime.fromisoformat(doc["sentAt"]).timestamp()) * 1000
        self.latencies_ms.append(latency)
        self.by_type.setdefault(str(doc.get("type")), []).append(latency)
        if self.track_ids:
            self.ids[event_id] = self.ids.get(event_id, 0) + 1
        self._arrived.set()

    async def read(self, ws: aiohttp.ClientWebSocketResponse, client: int) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frame(msg.data, client)

    async def connect(self, http: aiohttp.ClientSession, url: str, key: str, users: list[str]) -> int:
        slots = asyncio.Semaphore(32)

        async def one(user: str) -> None:
            async with slots:
                ws = await http.ws_connect(url, params={"token": sign(user, key, 7200)}, heartbeat=None)
                self.clients.append(ws)
                self._had.append(set())
                self.readers.append(asyncio.create_task(self.read(ws, len(self.clients) - 1)))

        await asyncio.gather(*(one(u) for u in users))
        return len(self.clients)

    async def wait(self, expected: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.total < expected and time.monotonic() < deadline:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break

    def stats(self, latencies: bool, by_type: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total, "last_at": self.last_at, "open": len(self.clients)}
        out["types"] = {t: len(v) for t, v in self.by_type.items()}
        if latencies:
            out["latencies_ms"] = self.latencies_ms
        if by_type:
            out["latencies_by_type"] = self.by_type
        if self.track_ids:
            out["ids"] = self.ids
            out["repeats"] = self.repeats
        return out

    def reset(self, track_ids: bool) -> None:
        self.total = 0
        self.last_at = 0.0
        self.latencies_ms = []
        self.by_type = {}
        self.ids = {}
        self.track_ids = track_ids
        self.repeats = 0
        self._had = [set() for _ in self.clients]


async def _serve(pipe: Connection, url: str, key: str) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        while True:
            command, args = await loop.run_in_executor(None, pipe.recv)
            if command == "connect":
                reply: Any = await sink.connect(http, url, key, args["users"])
            elif command == "wait":
                await sink.wait(args["expected"], args["timeout_s"])
                reply = sink.stats(args.get("latencies", False))
            elif command == "stats":
                reply = sink.stats(args.get("latencies", False), args.get("by_type", False))
            elif command == "reset":
                sink.reset(args.get("track_ids", False))
                reply = True
            elif command == "close":
                # all at once: each close waits for the emulator's answer, 200 in turn took 1.5 s
                await asyncio.gather(*(ws.close() for ws in sink.clients))
                await asyncio.gather(*sink.readers, return_exceptions=True)
                pipe.send(True)
                return
            else:
                reply = None
            pipe.send(reply)


def main(pipe: Connection, url: str, key: str) -> None:
    """Entry point of the client process (``multiprocessing`` spawn target)."""
    asyncio.run(_serve(pipe, url, key))
