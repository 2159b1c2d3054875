#!/usr/bin/env bash
# `make run`: bootstrap, then the whole stack in the foreground until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
# Set before bootstrap, so a broker it starts is stopped even if bootstrap then fails or
# is interrupted; it stops only a broker this run started (RABBITMQ_STARTED_HERE).
trap stop_rabbitmq_if_started EXIT
bootstrap run
cd "$ROOT"
"$VENV/bin/dialer" stack "$@"
