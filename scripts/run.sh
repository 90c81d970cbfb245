#!/usr/bin/env bash
# `make run`: start `fanout dev`, show a demo event reaching a WebSocket client, keep the stack up.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/fanout dev &
dev=$!
trap 'kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM
.venv/bin/python examples/demo.py --wait
echo "make run: the stack keeps running; publish more with '.venv/bin/fanout publish ...'. Ctrl-C to stop."
wait "$dev"
