"""moto's server for the local stack, with its SQS queues made safe for concurrent clients.

moto 5.2 serves each request on its own thread but changes a queue's message list without its lock:
``DeleteMessage`` rebuilds the list and assigns it back, so a message sent while the rebuild runs is
lost, and two deletes at once can bring a deleted message back. Real SQS does neither. The local
stack runs several worker processes against one queue while tests publish, so the race showed up as
a lost event in the reliability tests. Here every delete holds the queue's own lock, the one its
sends already take.

Run it as moto's own server: ``python -m fanout.motoserver -H 127.0.0.1 -p 5000``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from moto.server import main
from moto.sqs.models import Queue


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(queue: Queue, *args: Any, **kwargs: Any) -> Any:
        with queue._messages_lock:
            return method(queue, *args, **kwargs)

    return locked


def patch() -> None:
    """Make each queue's deletes take its lock (idempotent)."""
    if getattr(Queue.delete_message, "__wrapped__", None) is None:
        Queue.delete_message = _locked(Queue.delete_message)  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    main()
