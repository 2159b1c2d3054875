"""Concurrency across processes: `speed` holds globally and is reached."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.storage.mongo import Database
from tests.e2e.conftest import SIM_START
from tests.support.analysis import (
    campaign,
    consistency_problems,
    dials,
    duplicate_attempts,
    eventually,
    max_in_progress,
)
from tests.support.processes import Processes
from tests.support.seed import seed_campaign

pytestmark = pytest.mark.e2e


async def test_speed_holds_across_two_schedulers_and_three_workers(
    mongo_db: Database, processes: Processes
) -> None:
    # 300 calls, random outcomes. No simulated network failures: those end the instant
    # they start, and a zero-length attempt would never count in the sweep below.
    phones = [f"+1415555{i:04d}" for i in range(100, 400)]
    start = SIM_START + timedelta(seconds=30)
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=phones,
        start_at=start,
        end_at=start + timedelta(hours=9),
        now=SIM_START,
        speed=7,
    )
    for i in range(2):
        processes.start(f"scheduler-{i}", "scheduler")
    for i in range(3):
        processes.start(f"worker-{i}", "worker", WORKER_CONCURRENCY="10", SIM_FAILURE_RATIO="0")

    doc = await eventually(
        lambda: campaign(mongo_db, campaign_uuid),
        lambda c: c["status"] == "COMPLETED",
        120,
        "campaign COMPLETED",
    )
    records = await dials(mongo_db, campaign_uuid)
    assert len(records) == 300
    assert duplicate_attempts(records) == []
    peak = max_in_progress([(r["started_at"], r["ended_at"]) for r in records])
    assert peak == 7
    assert min(r["started_at"] for r in records) >= start
    assert doc["stats"]["IN_PROGRESS"] == 0 and doc["stats"]["PENDING"] == 0
    finals = sum(doc["stats"][k] for k in ("COMPLETED", "NO_ANSWER", "BUSY", "FAILED"))
    assert finals == 300
    assert await consistency_problems(mongo_db, campaign_uuid) == []
