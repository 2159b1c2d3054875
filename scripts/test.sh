#!/usr/bin/env bash
# `make test`: bootstrap, then the whole suite against real servers.
# MongoDB: MONGODB_URL if given, else testcontainers when Docker works, else an
# embedded SecantusDB process started by the test session itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
# Set before bootstrap, so a broker it starts is stopped even if bootstrap then fails or
# is interrupted; it stops only a broker this run started (RABBITMQ_STARTED_HERE).
trap stop_rabbitmq_if_started EXIT
bootstrap test
cd "$ROOT"
if [ "$#" -eq 0 ]; then
    # The full run also holds the code to its tooling: ruff (lint and format) and mypy --strict.
    "$VENV/bin/ruff" check shared services tests
    "$VENV/bin/ruff" format --check shared services tests
    "$VENV/bin/mypy"
fi
"$VENV/bin/python" -m pytest "$@"
