"""The connection lifecycle: ``$connect``, ``$disconnect`` and the client actions, one module per family.

The same code serves a real API Gateway WebSocket API as a Lambda function (``lambda_handler``, route
selection ``$request.body.action``, route responses enabled so a returned ``body`` reaches the client) and
the local emulator, which builds API-Gateway-shaped events and awaits ``Lifecycle.handle``.
"""

from fanout.lifecycle.aws import lambda_handler
from fanout.lifecycle.handler import ACTIONS, Lifecycle

__all__ = ["ACTIONS", "Lifecycle", "lambda_handler"]
