"""Log output of a process set up with ``configure_logging``: JSON lines off a terminal.

Each test runs a small Python process that configures logging the way the services do
(settings, then ``configure_logging``; ``LOG_JSON`` unset, so the terminal decides), binds the
context the way the dialer worker and the API bind it, and logs; the test reads what the
process wrote to stderr through a pipe (not a terminal) or a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

SCRIPT = """
import asyncio
import structlog
from shared.config import CommonSettings
from shared.logging import configure_logging

settings = CommonSettings()  # LOG_JSON unset: JSON unless stderr is a terminal
configure_logging(settings.log_level, settings.log_json)
log = structlog.get_logger("probe")

async def main():
    log.info("before", n=1)
    with structlog.contextvars.bound_contextvars(
        firm_id="acme", campaign_uuid="camp-1", call_uuid="call-1"
    ):
        log.info("bound")
        await asyncio.create_task(child())
    log.warning("after")

async def child():
    log.info("in a task")

asyncio.run(main())
"""

TIMEOUT = 60
#: The environment without the settings that would change the output.
ENV = {k: v for k, v in os.environ.items() if k not in ("LOG_JSON", "LOG_LEVEL")}


def run_piped() -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines, "nothing logged"
    return [json.loads(line) for line in lines]


def test_json_lines_with_event_level_and_utc_timestamp_when_not_a_terminal() -> None:
    records = run_piped()
    assert [r["event"] for r in records] == ["before", "bound", "in a task", "after"]
    assert [r["level"] for r in records] == ["info", "info", "info", "warning"]
    for record in records:
        assert isinstance(record, dict)
        stamp = datetime.fromisoformat(record["timestamp"])
        assert stamp.utcoffset() == timedelta(0)
    assert records[0]["n"] == 1


def test_bound_context_appears_in_each_line_inside_the_block_and_its_tasks() -> None:
    by_event = {r["event"]: r for r in run_piped()}
    bound = {"firm_id": "acme", "campaign_uuid": "camp-1", "call_uuid": "call-1"}
    for event in ("bound", "in a task"):
        assert {k: by_event[event].get(k) for k in bound} == bound, event
    for event in ("before", "after"):
        assert not bound.keys() & by_event[event].keys(), event


def test_not_json_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            stderr=terminal,
            stdout=subprocess.DEVNULL,
            env=ENV,
        )
    finally:
        os.close(terminal)
    output = b""
    try:
        while chunk := _read(controller):
            output += chunk
    finally:
        os.close(controller)
        assert proc.wait(TIMEOUT) == 0
    text = output.decode()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 4, text
    assert "bound" in lines[1] and "call_uuid" in lines[1] and "call-1" in lines[1]
    for line in lines:
        assert not line.lstrip().startswith("{"), line


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the process closed its end of the terminal
        return b""
