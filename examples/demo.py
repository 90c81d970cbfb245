"""Demo: connect a WebSocket client to the local gateway, publish an event for it, show it arriving.

Run against a running `fanout dev` (what `make run` does):  python examples/demo.py [--wait] [USER_ID]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from fanout import Publisher, Settings
from fanout.tokens import sign


async def wait_ready(settings: Settings, timeout_s: float = 90) -> None:
    """Wait until the worker reports ready (its /readyz answers 200)."""
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/readyz"
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: the local stack did not become ready within {timeout_s:.0f}s")
            await asyncio.sleep(0.3)


async def main(user_id: str, wait: bool) -> int:
    settings = Settings()
    if wait:
        await wait_ready(settings)
    url = f"ws://{settings.gateway_host}:{settings.gateway_port}/{settings.gateway_stage}"
    token = sign(user_id, settings.jwt_key())
    async with aiohttp.ClientSession() as http, http.ws_connect(url, params={"token": token}) as ws:
        print(f"demo: WebSocket client of user {user_id} connected to {url}")
        await ws.send_json({"action": "ping"})
        pong = await ws.receive_json(timeout=5)
        print(f"demo: ping answered with {pong['type']}")
        publisher = Publisher(settings)
        started = time.perf_counter()
        event_id = await asyncio.to_thread(
            publisher.publish,
            "notification.new",
            user_ids=[user_id],
            payload={"notificationId": "n1", "title": "Hello from fanout"},
        )
        print(f"demo: published notification.new {event_id} to SQS")
        frame = await ws.receive_json(timeout=10)
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"demo: received after {elapsed_ms:.0f} ms: {json.dumps(frame)}")
        publisher.close()
        return 0 if frame.get("id") == event_id else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--wait"]
    sys.exit(asyncio.run(main(args[0] if args else "demo-user", "--wait" in sys.argv)))
