#!/usr/bin/env bash
# `make run`: start `fanout dev`, show a demo event reaching a WebSocket client, keep the stack up and
# print the demo page's URL.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/fanout dev &
dev=$!
trap 'kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM
.venv/bin/python examples/demo.py --wait
page="http://${FANOUT_GATEWAY_HOST:-127.0.0.1}:${FANOUT_DEMO_PORT:-8090}"
echo "make run: the demo page is at $page/?user=alice (open $page/?user=bob in another tab)"
echo "make run: the stack keeps running; publish more with '.venv/bin/fanout publish ...'. Ctrl-C to stop."
wait "$dev"
