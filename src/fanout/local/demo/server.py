"""The demo page's HTTP server (dev only): the page, ``fanout.js``, and the JSON API the page uses.

``http://127.0.0.1:8090/?user=alice`` (``FANOUT_DEMO_PORT``). The API stands in for the product's own:
it mints connection tickets (``fanout.tickets``), answers the page's refetches, and turns the page's
mutations and "simulate" buttons into published events (``domain.py``). Identity is whatever user the page
names: this server runs only inside ``fanout dev`` and binds the loopback address by default.

| route | what |
|---|---|
| ``GET /`` | the page; ``/static/…`` its script and styles; ``/fanout.js`` the client (clients/browser) |
| ``GET /api/config`` | the WebSocket URL, the demo's users, conversation and event |
| ``GET /api/state?user=U`` | the user's unread count, notifications, the thread and the counters |
| ``POST /api/ticket`` ``{"user"}`` | a single-use connection ticket for the user |
| ``POST /api/seed`` ``{"participants"?}`` | (re)write the demo conversation's participants in MongoDB |
| ``POST /api/messages`` ``{"user","text","clientMessageId"?}`` | send a chat message |
| ``POST /api/notifications/read`` ``{"user"}`` | mark the user's notifications read |
| ``POST /api/simulate`` ``{"user","what"}`` | publish ``notification``, ``message``, ``rsvp``, ``checkins`` |

Mutations take the tab's connection id in ``X-Fanout-Connection-Id`` and leave that tab out of the
echo. Anything malformed is a 400 with a reason; nothing here logs a ticket.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from fanout import health
from fanout import logging as fanout_logging
from fanout.attributes import CONNECTION_ID
from fanout.config import Settings, load, warn_unknown
from fanout.errors import ConfigError
from fanout.local.demo.domain import CONVERSATION, EVENT, TOPIC, Demo
from fanout.logging import get_logger
from fanout.publish import AsyncPublisher
from fanout.store import mongo_client
from fanout.tickets import TicketStore

log = get_logger("fanout.demo")

STATIC = Path(__file__).with_name("static")
#: The browser client lives with the other clients: a checkout's clients/browser/fanout.js.
CLIENT = Path(__file__).resolve().parents[4] / "clients" / "browser" / "fanout.js"
_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TEXT = 2000
SIMULATIONS = ("notification", "message", "rsvp", "checkins")
DEMO: web.AppKey[Demo] = web.AppKey("demo", Demo)
TICKETS: web.AppKey[TicketStore] = web.AppKey("tickets", TicketStore)
WS_URL: web.AppKey[str] = web.AppKey("ws_url", str)


class BadRequest(web.HTTPBadRequest):
    """A 400 whose JSON body says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(text=f'{{"error": "{reason}"}}', content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > 16_384:
        raise BadRequest("body over 16 KiB")
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body is not a JSON object")
    return body


def _user(value: Any) -> str:
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise BadRequest("user: 1-64 letters, digits, _ . -")
    return value


def _connection(request: web.Request) -> str | None:
    """The tab's connection id, to leave out of the echo; a malformed one is ignored (excludes nobody)."""
    value = request.headers.get("X-Fanout-Connection-Id", "")
    return value if CONNECTION_ID.fullmatch(value) else None


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def client_module(request: web.Request) -> web.StreamResponse:
    if not CLIENT.is_file():
        raise web.HTTPNotFound(text=f"{CLIENT} is missing: run fanout dev from a checkout of the repository")
    return web.FileResponse(CLIENT, headers={"Content-Type": "text/javascript", "Cache-Control": "no-store"})


async def config(request: web.Request) -> web.Response:
    demo = request.app[DEMO]
    return web.json_response(
        {"wsUrl": request.app[WS_URL], "users": demo.participants, "conversationId": CONVERSATION,
         "eventId": EVENT, "topic": TOPIC}
    )  # fmt: skip


async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[DEMO].state(_user(request.query.get("user"))))


async def ticket(request: web.Request) -> web.Response:
    user = _user((await _body(request)).get("user"))
    return web.json_response({"ticket": await request.app[TICKETS].mint(user)})


async def seed(request: web.Request) -> web.Response:
    raw = (await _body(request)).get("participants")
    if raw is not None and (not isinstance(raw, list) or not 1 <= len(raw) <= 20):
        raise BadRequest("participants: a list of 1 to 20 users")
    participants = [_user(p) for p in raw] if raw is not None else None
    return web.json_response(await request.app[DEMO].seed(participants))


async def messages(request: web.Request) -> web.Response:
    body = await _body(request)
    demo, user = request.app[DEMO], _user(body.get("user"))
    text, client_id = body.get("text"), body.get("clientMessageId")
    if not isinstance(text, str) or not 0 < len(text.strip()) <= MAX_TEXT:
        raise BadRequest(f"text: 1 to {MAX_TEXT} characters")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 128):
        raise BadRequest("clientMessageId: 1 to 128 characters")
    if user not in demo.participants:
        raise web.HTTPForbidden(text='{"error": "not a participant"}', content_type="application/json")
    message = await demo.send(user, text.strip(), client_id, _connection(request))
    return web.json_response({"message": message})


async def read_all(request: web.Request) -> web.Response:
    user = _user((await _body(request)).get("user"))
    return web.json_response({"eventIds": await request.app[DEMO].read_all(user, _connection(request))})


async def simulate(request: web.Request) -> web.Response:
    body = await _body(request)
    demo, user, what = request.app[DEMO], _user(body.get("user")), body.get("what")
    if what == "notification":
        ids = await demo.notify(user, f"Simulated notification {demo.unread.get(user, 0) + 1}")
    elif what == "message":
        sender = demo.other(user)
        ids = [(await demo.send(sender, f"Hello {user}, from {sender}", None, None))["eventId"]]
    elif what == "rsvp":
        ids = await demo.rsvp(user)
    elif what == "checkins":
        ids = await demo.check_ins()
    else:
        raise BadRequest(f"what: one of {', '.join(SIMULATIONS)}")
    return web.json_response({"eventIds": ids})


def app(demo: Demo, tickets: TicketStore, ws_url: str) -> web.Application:
    """The demo's routes around one ``Demo`` and one ticket store."""
    application = web.Application(client_max_size=16_384)
    application[DEMO], application[TICKETS], application[WS_URL] = demo, tickets, ws_url
    application.router.add_get("/", index)
    application.router.add_get("/fanout.js", client_module)
    application.router.add_static("/static/", STATIC)
    application.router.add_get("/api/config", config)
    application.router.add_get("/api/state", state)
    application.router.add_post("/api/ticket", ticket)
    application.router.add_post("/api/seed", seed)
    application.router.add_post("/api/messages", messages)
    application.router.add_post("/api/notifications/read", read_all)
    application.router.add_post("/api/simulate", simulate)
    return application


async def serve(settings: Settings) -> None:
    """Run the demo server until SIGTERM/SIGINT; refused outside ``FANOUT_ENV=dev``."""
    if not settings.is_dev:  # it mints a ticket for whatever user a request names
        raise ConfigError(f"the demo page is for the local stack only (FANOUT_ENV=dev, not {settings.env})")
    client = mongo_client(settings)
    db = client[settings.mongo_db]
    tickets = TicketStore(db[settings.tickets_collection])
    ws_url = f"ws://{settings.gateway_host}:{settings.gateway_port}/{settings.gateway_stage}"
    async with AsyncPublisher(settings) as publisher:
        demo = Demo(settings, publisher, db[settings.conversations_collection])
        await demo.seed()
        runner = await health.serve(
            app(demo, tickets, ws_url), settings.gateway_host, settings.demo_port, shutdown_s=2
        )
        log.info("demo_started", page=f"http://{settings.gateway_host}:{settings.demo_port}/")
        try:
            await health.until_signalled()
        finally:
            await runner.cleanup()
            await client.close()


def main() -> None:
    """``python -m fanout.local.demo``: serve, or exit 2 with the reason (outside dev, among others)."""
    try:
        settings = load()
        fanout_logging.configure(settings.log_level, settings.log_format or "console")
        warn_unknown()
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"fanout demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
