#!/usr/bin/env bash
# Sets up everything `make run` and `make test` need on a fresh Debian/Ubuntu machine:
# the virtual environment with the project installed, and a running RabbitMQ
# (Debian's rabbitmq-server) unless AMQP_URL is given or a Docker engine can serve tests.
# Idempotent: a second run reuses what is there.
# Sourced by scripts/run.sh and scripts/test.sh; sets RABBITMQ_STARTED_HERE=1 when it started the broker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VAR="$ROOT/.var"
mkdir -p "$VAR"
RABBITMQ_STARTED_HERE=0

log() { printf '[bootstrap] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pick_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    log "Python 3.11 or newer is required"; return 1
}

ensure_venv() {
    local py stamp want
    py="$(pick_python)"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtual environment in .venv"
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            log "python venv module missing: installing python3-venv"
            as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv "$VENV"
        fi
    fi
    stamp="$VENV/.installed"
    want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing the project and its dependencies"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e "$ROOT[embedded,test,dev]"
        echo "$want" >"$stamp"
    fi
}

docker_engine() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

install_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
        log "installing Debian's rabbitmq-server"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    export PATH="$PATH:/usr/sbin"
}

ensure_rabbitmq() {
    if [ -n "${AMQP_URL:-}" ]; then log "using AMQP_URL from the environment"; return 0; fi
    if [ "${1:-}" = "test" ] && docker_engine; then
        log "Docker engine found: tests use testcontainers"
        # Still installed (not started): the short fault-injection test runs a private node.
        install_rabbitmq
        return 0
    fi
    install_rabbitmq
    if as_root rabbitmqctl -q status >/dev/null 2>&1; then
        log "RabbitMQ is running"
    else
        log "starting RabbitMQ"
        # Marked first, so that if this is interrupted the EXIT trap of run.sh / test.sh
        # still stops what it started; unmarked if the command says it started nothing.
        RABBITMQ_STARTED_HERE=1
        if ! as_root rabbitmq-server -detached; then
            RABBITMQ_STARTED_HERE=0
            log "rabbitmq-server -detached failed; see /var/log/rabbitmq/"
            return 1
        fi
    fi
    # `rabbitmq-server -detached` returns before the node has registered with epmd,
    # and `await_startup` fails at once on a node it cannot see: wait for it first.
    local deadline=$((SECONDS + 120))
    until as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "RabbitMQ did not answer within 120 s; see /var/log/rabbitmq/"
            return 1
        fi
        sleep 1
    done
    as_root rabbitmqctl -q await_startup --timeout 120 >/dev/null
    # Quorum queues and stream features are used by the topology.
    as_root rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1 || true
}

stop_rabbitmq_if_started() {
    if [ "${RABBITMQ_STARTED_HERE:-0}" = "1" ]; then
        log "stopping the RabbitMQ this run started"
        as_root rabbitmqctl -q stop >/dev/null 2>&1 || true
        as_root epmd -kill >/dev/null 2>&1 || true
    fi
}

bootstrap() {
    ensure_venv
    ensure_rabbitmq "${1:-run}"
}
