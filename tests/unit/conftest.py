"""Fixtures shared by the unit tests."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient
from structlog._config import BoundLoggerLazyProxy

from fanout import logging as fanout_logging
from tests.conftest import Server, dev_settings

ReadLogs = Callable[[], list[dict[str, Any]]]
Db = Any  # a database of the test MongoDB


def _uncache_module_loggers() -> None:
    """A module's ``log`` that an earlier ``configure`` in this process cached (its first use keeps the
    stream and pipeline of that moment) takes the configuration of now on its next line."""
    for name, module in list(sys.modules.items()):
        if name.startswith("fanout") and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, BoundLoggerLazyProxy):
                    value.__dict__.pop("bind", None)


@pytest.fixture
def json_logs() -> Iterator[ReadLogs]:
    """Configure JSON logs onto a buffer, module loggers included; return a reader of the parsed lines."""
    buffer = io.StringIO()
    fanout_logging.configure("INFO", "json", buffer)
    structlog.configure(cache_logger_on_first_use=False)  # so that nothing keeps this buffer after the test
    _uncache_module_loggers()

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield read
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, fanout_logging._Handler)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.fixture
async def db(mongo_server: Server) -> AsyncIterator[Db]:
    """A fresh database of the test MongoDB."""
    settings = dev_settings(mongo=mongo_server)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    yield client[settings.mongo_db]
    await client.drop_database(settings.mongo_db)
    await client.close()
