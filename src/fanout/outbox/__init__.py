"""The transactional outbox: an event is written in the same MongoDB transaction as the domain change,
and a relay (``fanout relay``, or the worker with ``FANOUT_RELAY=true``) moves it to SQS.

``Outbox(db).add(session, event)`` inside ``session.start_transaction()``; ``AsyncOutbox`` for
``AsyncMongoClient``. The relay is ``fanout.outbox.relay``.
"""

from fanout.outbox.box import AsyncOutbox, Outbox

__all__ = ["AsyncOutbox", "Outbox"]
