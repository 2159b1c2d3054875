"""End-to-end fixtures: real scheduler and dialer processes on accelerated time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.stack import free_port, wait_port
from tests.support.processes import Processes

#: Campaign seconds per wall second in the engine tests (10 campaign minutes a second).
RATE = 600
#: Campaign time when the test starts.
SIM_START = datetime(2026, 1, 15, 8, 59, 30, tzinfo=UTC)
#: Start of the campaigns' window: 30 campaign seconds after the test starts.
START = SIM_START + timedelta(seconds=30)


@pytest.fixture
def clock_env() -> dict[str, str]:
    return {
        "CLOCK_RATE": str(RATE),
        "CLOCK_ORIGIN": datetime.now(UTC).isoformat(),
        "CLOCK_SIM_ORIGIN": SIM_START.isoformat(),
        "SIM_RING_SECONDS": "8",
        "SIM_TALK_SECONDS": "60",
        "SIM_SEED": "7",
        "LEASE_SECONDS": "3",
        "SCHEDULER_TICK_SECONDS": "0.5",
        "ATTEMPT_LEASE_SECONDS": "3600",
    }


@pytest.fixture
def processes(
    service_env: dict[str, str],
    clock_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Processes]:
    procs = Processes({**service_env, **clock_env}, tmp_path)
    yield procs
    codes = procs.stop_all()
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    if failed or any(codes.values()):
        print(procs.logs())
    assert not any(codes.values()), f"processes did not stop cleanly on SIGTERM: {codes}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def iso(at: Any) -> str:
    return at.isoformat().replace("+00:00", "Z")


def record(phone: str) -> dict[str, Any]:
    return {
        "phone_number": phone,
        "language": "en",
        "gender_voice": "female",
        "agent_name": "agent",
        "variables": {"phone": phone},
    }


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self.session, self.base, self.headers = session, base, {"x-cybernet-api-key": key}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(processes: Processes, service_env: dict[str, str]) -> AsyncIterator[Api]:
    port = free_port()
    key = await asyncio.to_thread(processes.create_key)
    proc = processes.start("api", "api", API_PORT=str(port))
    await asyncio.to_thread(wait_port, "127.0.0.1", port, 60, proc)
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{port}/api/v1", key)


def campaign_body(phones: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "call_campaign_name": "e2e",
        "start_at": iso(START),
        "end_at": iso(START + timedelta(hours=9)),
        "speed": 2,
        "call_records": [record(p) for p in phones],
        **extra,
    }
