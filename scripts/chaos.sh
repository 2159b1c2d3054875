#!/usr/bin/env bash
# `make chaos`: the fault-injection run (tests/chaos). It starts its own RabbitMQ node
# (Debian's package, installed here when missing) and its own SecantusDB, so it can
# kill and restart them without touching any other broker or database.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
ensure_venv
install_rabbitmq
cd "$ROOT"
exec "$VENV/bin/python" -m tests.chaos "$@"
