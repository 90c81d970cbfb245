"""The product's own functions, named in settings as ``package.module:function``.

fanout asks the product a few questions it cannot answer alone: may this user follow that topic
(``FANOUT_TOPIC_POLICY``), who takes part in a conversation (``FANOUT_PARTICIPANTS_RESOLVER``), who may see
a user's presence (``FANOUT_PRESENCE_AUDIENCE``). Each is a plain function or a coroutine function; it is
loaded once when the settings are read, so a misspelt name fails at start, not on the first frame.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from fanout.errors import ConfigError


def load(dotted: str | None, setting: str) -> Callable[..., Any] | None:
    """The callable named ``package.module:function``, None when unset; ``ConfigError`` naming
    ``setting`` when it cannot be loaded or is not callable."""
    if not dotted:
        return None
    module, _, name = dotted.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{setting} {dotted!r} cannot be loaded: {type(exc).__name__}") from None
    if not callable(found):
        raise ConfigError(f"{setting} {dotted!r} is not callable")
    return found  # type: ignore[no-any-return]


async def call(hook: Callable[..., Any], *args: Any) -> Any:
    """Call a hook, awaiting its answer when it is a coroutine function (or returns an awaitable)."""
    answer = hook(*args)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer
