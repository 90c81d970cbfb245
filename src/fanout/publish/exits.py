"""Flushing before the process goes: at interpreter exit (atexit) and on SIGTERM, chained to the
application's own SIGTERM handler rather than replacing it.

On SIGTERM the flush runs first, then whatever handled SIGTERM before: the application's handler is
called; with the default action the signal is raised again, so the process still ends as it would
have; an ignored SIGTERM stays ignored. When the default action follows (after other publishers' hooks
too), the process ends as at exit, and the flush is the exit one (``"exit"``): what it could not send is
counted and named before the end. A handler installed later replaces this one unless it chains too; the
application then closes the publisher on its own shutdown path (atexit still flushes).
"""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from fanout.logging import get_logger

log = get_logger("fanout.publisher")


class ExitHooks:
    """Calls ``flush("exit")`` at interpreter exit and on a SIGTERM that ends the process (the default
    action), ``flush("sigterm")`` on one the application handles or ignores, until ``remove()``."""

    def __init__(self, flush: Callable[[str], Any], *, sigterm: bool = True) -> None:
        self._flush = flush
        self._previous: Any = None
        self._installed = False
        atexit.register(self._at_exit)
        # Python runs signal handlers in the main thread only, and only it may install one.
        if sigterm and threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True

    def _at_exit(self) -> None:
        self._flush("exit")

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous
        try:
            self._flush("exit" if _ends(previous) else "sigterm")
        except Exception as exc:  # the application's own handler must run whatever happened here
            log.error("publisher_flush_failed", error=type(exc).__name__)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not installed from Python
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    def remove(self) -> None:
        """Stop flushing at exit; give SIGTERM back to the previous handler if ours is still installed."""
        atexit.unregister(self._at_exit)
        if self._installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                previous = self._previous if self._previous is not None else signal.SIG_DFL
                signal.signal(signal.SIGTERM, previous)
            self._installed = False


def _ends(previous: Any) -> bool:
    """Whether SIGTERM ends the process once ``previous`` ran: its default action follows, at the end of
    a chain of other publishers' hooks if need be (an application handler or SIG_IGN lets it go on)."""
    while isinstance(owner := getattr(previous, "__self__", None), ExitHooks):
        previous = owner._previous
    return not callable(previous) and previous != signal.SIG_IGN
