"""structlog configuration: JSON in production, console locally, secrets and payloads redacted.

Every line goes through ``redact``: payloads, frames, tokens and URLs are dropped by key, token-shaped
strings (JWTs, ``?token=`` query parameters, bearer credentials, a URL's password) are masked wherever
they appear, and connection ids are shortened to a digest, in a management URL too. Tracebacks and
exceptions are told by ``fanout.tracebacks``: every frame, each exception's type and reason, none of
the values a library's message quotes (a duplicate key, ``input_value``). Lines about an event carry
``event_id`` and ``event_type`` (``bind_event``). Standard-library loggers (aiohttp, pymongo, botocore)
go through the same pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import unquote

import structlog

from fanout.tracebacks import describe, format_exception

#: Keys whose values never reach a log line.
REDACTED_KEYS = frozenset(
    {
        "token",
        "ticket",
        "payload",
        "body",
        "authorization",
        "jwt",
        "secret",
        "password",
        "url",
        "connect_url",
        "frame",
        "message_body",
        "headers",
        "query",
        "querystringparameters",
    }
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_jwt")
_CONNECTION_KEYS = frozenset(
    {"connection", "connection_id", "connectionid", "connection_ids", "exclude_connection_ids"}
)
#: A value already shortened by ``short_id`` (API Gateway's own ids are longer and base64).
_DIGEST = re.compile(r"[0-9a-f]{8}")

#: Token-shaped text inside any string value: JWTs, token query parameters, bearer credentials.
_SECRET_TEXT = [
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), "[redacted-jwt]"),
    (re.compile(r"fot_[A-Za-z0-9_-]{43}"), "[redacted-ticket]"),  # a ticket (tickets.py) outside a URL
    (
        re.compile(r"([?&](?:token|access_token|id_token|jwt|auth|ticket)=)[^&\s\"']+", re.IGNORECASE),
        r"\1[redacted]",
    ),
    (re.compile(r"(\bbearer\s+)\S+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"(://[^/\s:@\"']+:)[^/\s@\"']+@"), r"\1[redacted]@"),  # mongodb://user:password@host
]
#: A management API URL's connection id (``.../@connections/{id}``), percent-encoded.
_CONNECTION_PATH = re.compile(r"(@connections/)([^/?#\s\"']+)")

_MAX_DEPTH = 4


def short_id(value: str) -> str:
    """A stable 8-character digest of a connection id, enough to correlate log lines."""
    return hashlib.blake2s(value.encode(), digest_size=4).hexdigest()


def _digest(value: Any) -> Any:
    """A connection id's digest; a value already a digest (or None) stays as it is."""
    if value is None or (isinstance(value, str) and _DIGEST.fullmatch(value)):
        return value
    return short_id(str(value))


def scrub(text: str) -> str:
    """Mask token-shaped substrings of ``text``."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    if "@connections/" in text:
        text = _CONNECTION_PATH.sub(lambda m: m[1] + _digest(unquote(m[2])), text)
    return text


def _clean(key: str, value: Any, depth: int) -> Any:
    lowered = key.lower()
    if lowered in REDACTED_KEYS or lowered.endswith(_SECRET_SUFFIXES):
        return "[redacted]"
    if lowered in _CONNECTION_KEYS:
        if isinstance(value, list | tuple | set):
            return [_digest(v) for v in value]
        return _digest(value)
    return _clean_value(value, depth)


def _clean_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, BaseException):  # an exception passed as a value: told as a traceback tells it
        return scrub(describe(value))
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _clean(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_value(v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secrets and payloads by key, mask token-shaped text anywhere, shorten connection ids."""
    for key in list(event):
        event[key] = _clean(key, event[key], 0)
    return event


#: ``exc_info`` rendered into ``exception`` as a traceback without the values messages quote.
_exceptions = structlog.processors.ExceptionRenderer(format_exception)


def _asyncio_first_line(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """asyncio's report of a lost exception, up to its first line and parenthesis: the lines after it
    repr the task, callback and arguments (``exception=DuplicateKeyError('... dup key ...')``, payloads);
    the traceback follows from ``exc_info``."""
    text = event.get("event")
    if (
        getattr(event.get("_record"), "name", "") == "asyncio"
        and event.get("exc_info")
        and isinstance(text, str)
    ):
        event["event"] = text.partition("\n")[0].partition("(")[0].rstrip()
    return event


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` installs on the root logger (replaced, never duplicated, on reconfigure)."""


def configure(level: str = "INFO", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Configure structlog (and the standard-library loggers underneath) to write to ``stream`` (stderr)."""
    out = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            _exceptions,
            redact,  # after the exceptions are rendered, so tracebacks are scrubbed too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # One write per line (message and newline together): a pool's processes share an unbuffered
        # stderr in the image (PYTHONUNBUFFERED=1), and print()'s two writes let their lines interleave.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library: same format, same redaction, warnings and up only.
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                timestamper,
                _asyncio_first_line,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _exceptions,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))


def bind_event(event_id: str, event_type: str) -> None:
    """Name the event on every later log line of the current task (and of the tasks it starts)."""
    structlog.contextvars.bind_contextvars(event_id=event_id, event_type=event_type)


def get_logger(name: str) -> Any:
    """A structlog logger; ``configure`` decides how its lines look."""
    return structlog.get_logger(name)
