"""The connection store: live WebSocket connections per user in MongoDB (``websocketconnections``).

``records``: a record's shape and how the worker reads one, skipping the malformed; ``resolve``: the live
connections an event reaches, streamed in batches; ``connections``: ``ConnectionStore``, those reads plus
the lifecycle's writes and the worker's prune and revocations.
"""

from fanout.store.connections import ConnectionStore, mongo_client
from fanout.store.records import BUCKETS, Connection, SkipHook, bucket_of

__all__ = ["BUCKETS", "Connection", "ConnectionStore", "SkipHook", "bucket_of", "mongo_client"]
