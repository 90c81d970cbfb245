"""A child process that does not outlive its parent: the worker pool's processes, and the local stack's."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, so no child outlives a killed parent."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
