"""Run-time switches: a domain (``chat``), a type prefix (``chat.typing``) or one event type switched off
or on without a redeploy.

The state is a small MongoDB collection (``FANOUT_FLAGS_COLLECTION``, default ``fanoutflags``), one
document per key: ``{"_id": "chat", "enabled": false, "updatedAt": …}``. The most specific key wins
(``chat`` off with ``chat.message`` on delivers only ``chat.message``); a type no key names is on.
Each worker process reads the whole collection once at start and then every ``REFRESH_S`` from one
task; deciding an event is a dictionary lookup, never a query. A failed refresh keeps the last state.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from fanout.catalog import DOMAINS, domain_of
from fanout.logging import get_logger

log = get_logger("fanout.flags")

REFRESH_S = 2.0
MAX_FLAGS = 1000  # more documents than this are not read: the collection is a handful of switches
_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def check_key(key: str) -> str:
    """A switchable key: a known domain, or a type or type prefix within one; ``ValueError`` otherwise."""
    if len(key) > 128 or not _KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a domain or event type (lowercase, e.g. chat or chat.typing)")
    if domain_of(key) not in DOMAINS:
        raise ValueError(f"{key!r} is not in a known domain ({', '.join(sorted(DOMAINS))})")
    return key


class Switches:
    """One reading of the flags: which keys are set, and what that means for each event type."""

    __slots__ = ("_decided", "states")

    def __init__(self, states: Mapping[str, bool] | None = None) -> None:
        self.states: dict[str, bool] = dict(states or {})
        self._decided: dict[str, bool] = {}  # per type; the keys are bounded by the types seen

    def enabled(self, event_type: str) -> bool:
        """Whether an event of this type is delivered: the longest set prefix decides, else on."""
        if not self.states:
            return True
        found = self._decided.get(event_type)
        if found is None:
            found = True
            parts = event_type.split(".")
            for end in range(len(parts), 0, -1):
                state = self.states.get(".".join(parts[:end]))
                if state is not None:
                    found = state
                    break
            if len(self._decided) < 10_000:
                self._decided[event_type] = found
        return found

    def off(self) -> list[str]:
        """The keys switched off, sorted."""
        return sorted(k for k, on in self.states.items() if not on)


@dataclass(frozen=True, slots=True)
class Flag:
    """One stored switch, as ``fanout flags list`` shows it."""

    key: str
    enabled: bool
    updated_at: datetime | None


class FlagStore:
    """The flags collection."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection

    @classmethod
    def from_client(cls, client: AsyncMongoClient[dict[str, Any]], db: str, collection: str) -> FlagStore:
        return cls(client[db][collection])

    async def flags(self) -> list[Flag]:
        """Every well-formed stored switch, sorted by key; malformed documents are skipped."""
        found = []
        async for doc in self._col.find({}).limit(MAX_FLAGS):
            key, enabled, at = doc.get("_id"), doc.get("enabled"), doc.get("updatedAt")
            if isinstance(key, str) and _KEY.fullmatch(key) and isinstance(enabled, bool):
                found.append(Flag(key, enabled, at if isinstance(at, datetime) else None))
        return sorted(found, key=lambda f: f.key)

    async def read(self) -> Switches:
        """The current switches."""
        return Switches({f.key: f.enabled for f in await self.flags()})

    async def set(self, key: str, enabled: bool) -> None:
        """Switch ``key`` on or off (stored, so it also overrides a less specific key)."""
        await self._col.update_one(
            {"_id": check_key(key)},
            {"$set": {"enabled": enabled, "updatedAt": datetime.now(UTC)}},
            upsert=True,
        )

    async def clear(self, key: str) -> bool:
        """Forget ``key``'s switch, so the less specific key (or on) decides; False if it had none."""
        result = await self._col.delete_one({"_id": check_key(key)})
        return result.deleted_count > 0


class LiveSwitches:
    """A worker process's view of the flags, refreshed by one task (``run``)."""

    def __init__(self, store: FlagStore) -> None:
        self._store = store
        self.current = Switches()
        self._failing = False

    def enabled(self, event_type: str) -> bool:
        """Whether to deliver an event of this type, as of the last refresh."""
        return self.current.enabled(event_type)

    async def refresh(self) -> None:
        """Read the flags now; raises when MongoDB does not answer (the last state stays)."""
        new = await self._store.read()
        if new.states != self.current.states:
            log.info("flags_changed", off=new.off(), keys=len(new.states))
        self.current = new

    async def run(self, every_s: float = REFRESH_S) -> None:
        """Refresh every ``every_s`` until cancelled; a failure is logged once and the state kept."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh()
                if self._failing:
                    log.info("flags_refresh_recovered")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("flags_refresh_failed", error=type(exc).__name__, keeping=self.current.off())
                self._failing = True
