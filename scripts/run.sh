#!/usr/bin/env bash
# `make run`: bootstrap, then the whole stack in the foreground until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
bootstrap run
trap stop_rabbitmq_if_started EXIT
cd "$ROOT"
"$VENV/bin/dialer" stack "$@"
