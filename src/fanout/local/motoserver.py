"""moto's server for the local stack, made safe for concurrent clients and linear in queue depth.

Five things in moto 5.2's SQS model differ from SQS in ways the local stack feels:

- **A lost message.** Requests are served on threads, but ``DeleteMessage`` rebuilds a queue's
  message list and assigns it back without the lock that sends take, so a message sent during the
  rebuild is lost, and two deletes at once can bring a deleted message back. Several worker processes
  deleting while a test publishes lost one event of 2,000 this way. Here each delete takes the lock.
- **Quadratic receives.** For every message it hands out, ``ReceiveMessage`` checks the retention
  period by building all the queue's attributes, three times, and each build counts the queue's
  messages with a clock read per message. A receive of 10 at a depth of 200 took 179 ms; with the
  retention period read directly and the clock read as ``time.time()`` it takes about 3 ms, so the
  worker, not moto, sets the pace in tests and benchmarks.
- **FIFO groups handed out twice.** ``ReceiveMessage`` notes the message groups in flight when it
  starts and keeps that note through its long poll, so two receives at once (two worker processes)
  each took a message of the same group, which SQS never does: a group with a message in flight gives
  out nothing more until that message is deleted or visible again. Here a FIFO queue lists no message of
  such a group, and the receives of one FIFO queue choose their messages one at a time (a long poll
  waits without holding that turn).
- **Sends linear in queue depth.** ``SendMessage`` reads one attribute (content-based deduplication)
  through the queue's full attribute map, which counts every queued message three times, for every
  message sent: a batch of 10 took 8 ms on an empty queue and 45 ms at a depth of 1,000. Here a send
  reads that attribute alone.
- **Slow receipt handles.** Each received message gets a 185-letter receipt handle drawn one
  ``random.choice`` at a time, 7 ms of a receive of 10; here in one ``random.choices`` call.

The behaviour is otherwise moto's own. One more difference is the server's: ``moto_server`` runs on
Werkzeug's development server, which closes every connection after its answer, so every SQS call paid
a TCP connect that SQS's keep-alive connections do not (the worker's receives and deletes: about 8% of
its CPU at fan-out 1). Here moto's application is served by waitress, with HTTP/1.1 keep-alive and a
thread per concurrent request. Run it as moto's server:
``python -m fanout.local.motoserver -H 127.0.0.1 -p 5000``.
"""

from __future__ import annotations

import functools
import string
import threading
import time
from collections.abc import Callable
from typing import Any

import moto.sqs.models
from moto.moto_api._internal import mock_random
from moto.sqs.models import Message, Queue, SQSBackend

sqs_models: Any = moto.sqs.models
_moto_unix_time = sqs_models.unix_time


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(queue: Queue, *args: Any, **kwargs: Any) -> Any:
        with queue._messages_lock:
            return method(queue, *args, **kwargs)

    return locked


def _unix_time(dt: Any = None) -> float:
    return time.time() if dt is None else float(_moto_unix_time(dt))


def _unix_time_millis(dt: Any = None) -> float:
    return _unix_time(dt) * 1000.0


def _within_retention(backend: SQSBackend, queue_name: str, message: Message) -> bool:
    queue: Any = backend.get_queue(queue_name)
    return bool(int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time())  # type: ignore[operator]


_moto_messages: Any = Queue.messages
_choosing = threading.local()  # the FIFO queue lock the current request thread holds, if any


def _fifo_messages(queue: Any) -> list[Message]:
    """Visible messages; on a FIFO queue, none of a group that has a message in flight."""
    visible: list[Message] = _moto_messages.fget(queue)
    if not queue.fifo_queue:
        return visible
    locked = {m.group_id for m in list(queue.pending_messages) if not m.visible}
    return [m for m in visible if m.group_id not in locked]


def _one_chooser(receive: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(receive)
    def receive_message(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = backend.get_queue(queue_name)
        if not queue.fifo_queue:
            return receive(backend, queue_name, *args, **kwargs)
        lock = queue.__dict__.setdefault("_fanout_choose_lock", threading.Lock())
        with lock:
            _choosing.lock = lock
            try:
                return receive(backend, queue_name, *args, **kwargs)
            finally:
                _choosing.lock = None

    return receive_message


def _wait_unlocked(wait: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(wait)
    def wait_for_messages(queue: Any, timeout: int) -> Any:
        lock = getattr(_choosing, "lock", None)
        if lock is None or queue.__dict__.get("_fanout_choose_lock") is not lock:
            return wait(queue, timeout)
        lock.release()  # a long poll waits without holding the queue's turn to choose
        try:
            return wait(queue, timeout)
        finally:
            lock.acquire()

    return wait_for_messages


_sending = threading.local()
_all_attributes: Any = Queue.attributes


def _attributes(queue: Any) -> dict[str, Any]:
    if getattr(_sending, "on", False):  # within a send: only what SendMessage reads
        if not queue.fifo_queue:
            return {}
        value = queue.content_based_deduplication
        return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}
    return dict(_all_attributes.fget(queue))


def _sends_read_little(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def send(*args: Any, **kwargs: Any) -> Any:
        _sending.on = True
        try:
            return method(*args, **kwargs)
        finally:
            _sending.on = False

    return send


def _receipt_handle() -> str:
    return "".join(mock_random.choices(string.ascii_lowercase, k=185))  # moto's length and letters


def patch() -> None:
    """Apply the five fixes to moto's SQS model (idempotent)."""
    if getattr(Queue.delete_message, "__wrapped__", None) is None:
        Queue.delete_message = _locked(Queue.delete_message)  # type: ignore[method-assign]
        Queue.messages = property(_fifo_messages)  # type: ignore[method-assign,assignment]
        Queue.wait_for_messages = _wait_unlocked(Queue.wait_for_messages)  # type: ignore[method-assign]
        SQSBackend.receive_message = _one_chooser(SQSBackend.receive_message)  # type: ignore[method-assign]
    sqs_models.unix_time = _unix_time
    sqs_models.unix_time_millis = _unix_time_millis
    backend: Any = SQSBackend
    backend.is_message_valid_based_on_retention_period = _within_retention
    if getattr(SQSBackend.send_message, "__wrapped__", None) is None:
        backend.send_message = _sends_read_little(SQSBackend.send_message)
        queue: Any = Queue
        queue.attributes = property(_attributes)
    sqs_models.generate_receipt_handle = _receipt_handle


def serve(host: str, port: int) -> None:
    """moto's application, patched, on waitress: keep-alive connections, threads for long polls."""
    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    patch()
    app = DomainDispatcherApplication(create_backend_app)
    # Every open long poll holds a thread: a pool of worker processes, the tests and the bench hold dozens.
    waitress.serve(
        app, host=host, port=port, threads=64, connection_limit=1000, asyncore_use_poll=True, ident="moto",
        _quiet=True,
    )  # fmt: skip


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fanout.local.motoserver", description=serve.__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    serve(args.host, args.port)
