#!/usr/bin/env bash
# `make bench` / `make bench-scale`: the same set-up as `make run` (virtualenv, RabbitMQ
# started if it is not running, and stopped again if this run started it), then the
# benchmarks. The embedded database server is started by the benchmark itself, unless
# MONGODB_URL is set. Arguments go to `python -m bench` (see `python -m bench --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
bootstrap run
trap stop_rabbitmq_if_started EXIT
cd "$ROOT"
"$VENV/bin/python" -m bench "$@"
