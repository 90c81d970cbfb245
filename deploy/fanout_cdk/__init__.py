"""The CDK app's parts, one module per concern; ``deploy/fanout_stack.py`` puts them together.

- ``parameters``: the context values the stack reads, checked once;
- ``queues``: the events queue, its DLQ, the topic, the publisher policy and the worker's task role;
- ``service``: network, cluster, the Fargate worker service and its autoscaling;
- ``websocket_api``: the WebSocket API, its routes, stage, access log and optional domain;
- ``lifecycle``, ``bundling``: the lifecycle Lambda, its role, and its code bundled without Docker;
- ``metrics``, ``alarms``, ``dashboard``: monitoring, built on ``metrics_contract`` and ``thresholds``.
"""
