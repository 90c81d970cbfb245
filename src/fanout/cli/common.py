"""What every command of the ``fanout`` command line shares: its signature and how it fails."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from fanout.config import Settings

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: A command: its parsed arguments and the settings in, its exit code out.
Command = Callable[[argparse.Namespace, Settings], int]


def fail(message: str, code: int = 2) -> int:
    """Print ``fanout: error: MESSAGE`` to stderr; the exit code to return."""
    print(f"fanout: error: {message}", file=sys.stderr)
    return code
