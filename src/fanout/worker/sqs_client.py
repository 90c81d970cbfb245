"""The worker's own SQS client for its three hot-path calls: receive, delete and change visibility.

aiobotocore costs about 900 us of CPU per call (its generic serializer, signer, event hooks and parser);
these calls are SQS's JSON protocol (``POST /`` with ``X-Amz-Target: AmazonSQS.<Action>``), a JSON
body serialized exactly as botocore does, signed by ``gateway.sigv4.Signer.sign_json`` and sent over
the worker's keep-alive HTTP client. ``tests/unit/worker/test_sqs_client.py`` checks the body and the
signature against botocore's byte for byte, and the calls against a real moto server. Every other SQS
call (queue URLs, sends, attributes) stays on aiobotocore.

Errors: ``SqsError`` for an answer SQS gives (its ``code`` is the AWS error name), ``TimeoutError`` and
``OSError`` for the network, ``ProtocolError`` for an unreadable answer.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from fanout.errors import FanoutError
from fanout.gateway.http import HttpClient, ProtocolError, frame
from fanout.gateway.sigv4 import Signer

#: A receive of 10 messages of up to 1 MiB each, JSON-escaped.
MAX_ANSWER_BYTES = 24 * 1024 * 1024


class SqsError(FanoutError):
    """SQS answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code = status, code


def body(params: dict[str, Any]) -> bytes:
    """A call's body, as botocore's JSON serializer writes it."""
    return json.dumps(params).encode()


class SqsClient:
    """``receive_message``, ``delete_message_batch`` and ``change_message_visibility_batch`` with
    botocore's parameter and answer shapes, so the worker can use it where it used aiobotocore."""

    def __init__(self, signer: Signer, endpoint: str, *, timeout_s: float, poll_timeout_s: float) -> None:
        url = urlsplit(endpoint)
        self._host = url.netloc
        self._signer = signer
        self._calls = HttpClient(timeout_s=timeout_s, max_body_bytes=MAX_ANSWER_BYTES)
        self._polls = HttpClient(timeout_s=poll_timeout_s, max_body_bytes=MAX_ANSWER_BYTES)
        self._call_origin = self._calls.origin(url.scheme, url.hostname or "", url.port)
        self._poll_origin = self._polls.origin(url.scheme, url.hostname or "", url.port)

    async def close(self) -> None:
        await self._calls.close()
        await self._polls.close()

    async def _call(self, action: str, params: dict[str, Any], *, poll: bool = False) -> dict[str, Any]:
        data = body(params)
        headers = self._signer.sign_json(self._host, f"AmazonSQS.{action}", data, query_mode=True)
        origin = self._poll_origin if poll else self._call_origin
        status, answer = await origin.request(frame("POST", self._host, "/", headers, data))
        try:
            doc = json.loads(answer) if answer else {}
        except ValueError:  # a proxy's or an overloaded server's page rather than SQS's JSON
            doc = None
        if status != 200:
            found = doc if isinstance(doc, dict) else {}
            code = str(found.get("__type", "")).rpartition("#")[2] or f"HTTP{status}"
            raise SqsError(status, code, str(found.get("message") or found.get("Message") or ""))
        if not isinstance(doc, dict):
            raise ProtocolError(f"{action}: an answer that is not a JSON object ({len(answer)} bytes)")
        return doc

    async def receive_message(self, **params: Any) -> dict[str, Any]:
        """A long poll; answered within ``WaitTimeSeconds`` (the poll client's timeout covers it)."""
        return await self._call("ReceiveMessage", params, poll=True)

    async def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        return await self._call("DeleteMessageBatch", params)

    async def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        return await self._call("ChangeMessageVisibilityBatch", params)
