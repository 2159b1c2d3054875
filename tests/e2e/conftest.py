"""End-to-end fixtures: real scheduler and dialer processes on accelerated time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.processes import Processes

#: Campaign seconds per wall second in the engine tests (10 campaign minutes a second).
RATE = 600
#: Campaign time when the test starts.
SIM_START = datetime(2026, 1, 15, 8, 59, 30, tzinfo=UTC)


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
