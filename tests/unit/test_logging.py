"""Log configuration: JSON lines, event ids on every line, secrets, payloads and connection ids redacted."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog

from fanout import logging as fanout_logging
from fanout import tickets
from fanout.logging import bind_event, redact, scrub, short_id

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXNlY3JldA"


def test_redact_drops_secret_and_payload_keys() -> None:
    """Payloads, bodies, frames, tokens and URLs are replaced, whatever their case or nesting."""
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "payload": {"text": "hello"},
            "Token": "abc",
            "body": "{}",
            "connect_url": "ws://h/local?token=abc",
            "refresh_token": "r",
            "nested": {"frame": "f", "ok": 1},
        },
    )
    assert "[redacted]" == event["payload"]
    assert "[redacted]" == event["Token"]
    assert "[redacted]" == event["body"]
    assert "[redacted]" == event["connect_url"]
    assert "[redacted]" == event["refresh_token"]
    assert {"frame": "[redacted]", "ok": 1} == event["nested"]


def test_scrub_masks_token_shaped_text_anywhere() -> None:
    """JWTs, token and ticket query parameters and bearer credentials are masked inside any string."""
    assert "[redacted-jwt]" == scrub(JWT)
    assert "ws://h/local?token=[redacted]&x=1" == scrub("ws://h/local?token=abc123&x=1")
    assert "wss://h/prod?ticket=[redacted]" == scrub("wss://h/prod?ticket=fot_abc-123")
    assert "[redacted]" == redact(None, "info", {"ticket": "fot_abc"})["ticket"]
    assert "Authorization: Bearer [redacted]" == scrub("Authorization: Bearer abc.def")
    assert "error near [redacted-jwt] in header" == scrub(f"error near {JWT} in header")
    ticket, _ = tickets._new("u1", 30)  # a real ticket's shape, not written anywhere
    assert "ticket [redacted-ticket] was used" == scrub(f"ticket {ticket} was used")


def test_connection_ids_are_hashed_singly_and_in_lists() -> None:
    """Connection ids never appear whole: a stable 8-character digest stands in for each."""
    event = redact(None, "info", {"connection_id": "AbCdEf123=", "connection_ids": ["a", "b"]})
    assert short_id("AbCdEf123=") == event["connection_id"]
    assert 8 == len(event["connection_id"])
    assert [short_id("a"), short_id("b")] == event["connection_ids"]


def test_json_lines_carry_the_bound_event(json_logs: Any) -> None:
    """After bind_event, every line names the event id and type, and the payload stays out."""
    log = structlog.get_logger("test")
    bind_event("evt_1", "chat.message")
    log.info("posted", payload={"secret": "s3cr3t"}, connection_id="conn-1")
    (line,) = json_logs()
    assert "evt_1" == line["event_id"]
    assert "chat.message" == line["event_type"]
    assert "posted" == line["event"]
    assert "s3cr3t" not in json.dumps(line)
    assert "conn-1" not in json.dumps(line)


def test_standard_library_lines_are_json_and_redacted(json_logs: Any) -> None:
    """Library warnings (aiohttp, pymongo, botocore) come out as the same redacted JSON lines."""
    logging.getLogger("aiohttp.server").warning("bad request GET /local?token=%s", JWT)
    logging.getLogger("aiohttp.server").info("too chatty to keep")
    (line,) = json_logs()
    assert "warning" == line["level"]
    assert "aiohttp.server" == line["logger"]
    assert JWT not in json.dumps(line)
    assert "token=[redacted]" in line["event"]


def test_exception_tracebacks_are_scrubbed(json_logs: Any) -> None:
    """A traceback whose message holds a token is masked too."""
    log = structlog.get_logger("test")
    try:
        raise ValueError(f"could not verify {JWT}")
    except ValueError:
        log.exception("failed")
    (line,) = json_logs()
    assert "ValueError" in line["exception"]
    assert JWT not in line["exception"]


def test_reconfiguring_installs_one_handler(json_logs: Any) -> None:
    """Configuring twice (CLI, then a pool child) leaves one stdlib handler, so no line is doubled."""
    fanout_logging.configure("INFO", "json", io.StringIO())
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, fanout_logging._Handler)]
    assert 1 == len(handlers)


def test_a_connection_id_under_any_connection_key_is_shortened_once() -> None:
    """Raw ids under connection keys become their digest; a digest passed in stays the same digest."""
    raw = "L0SM9cOFvHcCIhw="
    event = redact(
        None, "", {"connection": raw, "connection_id": short_id(raw), "connection_ids": [raw, None]}
    )
    assert {
        "connection": short_id(raw),
        "connection_id": short_id(raw),
        "connection_ids": [short_id(raw), None],
    } == event


_WRITER = """
import sys
from fanout.logging import configure, get_logger
configure("INFO", "json")
log = get_logger("fanout.worker")
for i in range(int(sys.argv[1])):
    log.info("event_done", n=i, filler="x" * 200)
"""


def test_processes_sharing_stderr_never_split_a_line(tmp_path: Path) -> None:
    """A pool's processes share one stderr, unbuffered in the image (PYTHONUNBUFFERED=1): each line goes
    out in one write, so the lines of two processes never interleave."""
    log = tmp_path / "pool.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        writers = [
            subprocess.Popen([sys.executable, "-c", _WRITER, "1000"], stderr=out, env=env) for _ in range(2)
        ]
        assert [w.wait(60) for w in writers] == [0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 2000
    assert sorted(json.loads(line)["n"] for line in lines) == sorted([*range(1000)] * 2)
