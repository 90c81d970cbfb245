"""Exceptions told in a log line without the values their messages quote.

Library messages quote what they were handed: pymongo's a duplicate key or a refused document (a raw
connection id, a payload), pydantic's ``input_value`` (a token, a payload, a whole settings dict),
botocore's a request parameter, ``KeyError`` its key. A log line keeps what on-call needs instead: each
exception's type, its reason without the values (an error code and the index, a validation error's
field and rule, an AWS error code and operation), and every frame (file, line, function, source line);
never the frames' local variables. Any other message is kept up to ``MAX_MESSAGE`` characters; the log
pipeline's ``redact`` then masks token-shaped text in all of it.

No library is imported here: an exception of a library's type exists only once the library is loaded,
so its module is looked up in ``sys.modules`` (``import fanout`` stays free of the AWS and Mongo clients).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

MAX_MESSAGE = 300  # characters of a message told as it is
MAX_ERRORS = 5  # validation errors, write errors and group members named
MAX_DEPTH = 3  # exception groups inside groups

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _loaded(module: str, name: str) -> type | None:
    """A library's exception class, if the process has loaded the library."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _text(value: object, limit: int = MAX_MESSAGE) -> str:
    try:
        text = str(value)
    except Exception:  # a __str__ that raises must not cost the log line
        return "<unprintable>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def _mongo(exc: Any) -> str:
    """An OperationFailure by its code, name and index fields: the message quotes the key or document."""
    details = exc.details if isinstance(exc.details, dict) else {}
    parts = [f"code {exc.code}"]
    if isinstance(details.get("codeName"), str):
        parts.append(details["codeName"])
    if isinstance(details.get("keyPattern"), dict):
        parts.append("index " + ",".join(_text(k, 64) for k in details["keyPattern"]))
    writes = details.get("writeErrors")
    if isinstance(writes, list) and writes:
        codes = [str(w.get("code")) for w in writes[:MAX_ERRORS] if isinstance(w, dict)]
        parts.append(f"{len(writes)} write errors, codes {','.join(codes)}")
    return " ".join(parts)


def _mongo_bulk(exc: Any) -> str:
    """A client bulk write's error codes (its message quotes the full results)."""
    codes = [str(w.get("code")) for w in (exc.write_errors or [])[:MAX_ERRORS] if isinstance(w, dict)]
    return f"write error codes {','.join(codes) or 'none'}"


def _pydantic(exc: Any) -> str:
    """Each error's field, rule and message; never ``input_value``, which may be a token or a payload."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    told = [
        f"{'.'.join(_text(p, 40) for p in e['loc']) or '(root)'}: {_text(e['msg'], 160)} [{e['type']}]"
        for e in errors[:MAX_ERRORS]
    ]
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} validation {noun} for {exc.title}: " + "; ".join(told)


def _aws(exc: Any) -> str:
    """A botocore ClientError by code, operation and status: its message can quote a request parameter."""
    response = exc.response if isinstance(exc.response, dict) else {}
    code = response.get("Error", {}).get("Code", "?")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    return f"{code} on {exc.operation_name} (HTTP {status})"


#: (module, class, how its reason is told), first match wins; None tells the type alone.
_REASONS: list[tuple[str, str, Callable[[Any], str] | None]] = [
    ("pymongo.errors", "OperationFailure", _mongo),
    ("pymongo.errors", "ClientBulkWriteException", _mongo_bulk),
    ("bson.errors", "BSONError", None),  # "cannot encode object: <the value>"
    ("pydantic_core", "ValidationError", _pydantic),
    ("botocore.exceptions", "ClientError", _aws),
    ("fanout.worker.sqs_client", "SqsError", lambda e: f"{e.code} (HTTP {e.status})"),
]


def reason(exc: BaseException) -> str:
    """Why ``exc`` was raised, without the values its message may quote (empty when only its type is safe)."""
    for module, name, tell in _REASONS:
        if _is(exc, module, name):
            try:
                return tell(exc) if tell is not None else ""
            except Exception:  # a shape this version of the library does not have: the type alone
                return ""
    if isinstance(exc, KeyError):
        return f"a {type(exc.args[0]).__name__} key" if exc.args else ""  # the key is data, not code
    if isinstance(exc, BaseExceptionGroup):
        return _text(exc.message)
    return _text(exc)


def _name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(exc: BaseException) -> str:
    """One line: the exception's type and its reason, as a traceback's last line shows them."""
    why = reason(exc)
    return f"{_name(exc)}: {why}" if why else _name(exc)


def _chain(exc: BaseException) -> list[tuple[BaseException, str]]:
    """``exc`` and the exceptions it was raised from or during, innermost first, each with the line that
    leads to the next one, as the standard library prints them."""
    links: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    joint = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        links.append((current, joint))
        if current.__cause__ is not None:
            current, joint = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, joint = current.__context__, _CONTEXT
        else:
            current = None
    return links[::-1]


def _render(exc: BaseException, depth: int) -> list[str]:
    lines: list[str] = []
    for link, joint in _chain(exc):
        if link.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines += traceback.StackSummary.extract(traceback.walk_tb(link.__traceback__)).format()
        lines.append(describe(link) + "\n")
        if isinstance(link, BaseExceptionGroup) and depth < MAX_DEPTH:
            for i, member in enumerate(link.exceptions[:MAX_ERRORS], 1):
                lines.append(f"  +---------------- {i} ----------------\n")
                lines += ["  | " + line for line in "".join(_render(member, depth + 1)).splitlines(True)]
            if len(link.exceptions) > MAX_ERRORS:
                lines.append(f"  +---------------- and {len(link.exceptions) - MAX_ERRORS} more\n")
        lines.append(joint)
    return lines


def format_exception(exc_info: ExcInfo) -> str:
    """A traceback as the standard library prints it, with each message told by ``describe``."""
    return "".join(_render(exc_info[1], 0)).rstrip("\n")
