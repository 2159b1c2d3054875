"""Retries, calling window and carry-over, firms side by side: real processes, seeded data."""

from __future__ import annotations

import itertools
from collections import defaultdict
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
START = SIM_START + timedelta(seconds=30)  # 09:00:00 campaign time


def start_engine(
    processes: Processes, schedulers: int = 1, workers: int = 2, **worker_env: str
) -> None:
    for i in range(schedulers):
        processes.start(f"scheduler-{i}", "scheduler")
    for i in range(workers):
        processes.start(f"worker-{i}", "worker", **worker_env)


async def completed(db: Database, campaign_uuid: str, within: float = 120) -> dict:  # type: ignore[type-arg]
    return await eventually(
        lambda: campaign(db, campaign_uuid),
        lambda c: c["status"] == "COMPLETED",
        within,
        "campaign COMPLETED",
    )


async def test_retries_follow_the_interval_and_stop_at_the_limit(
    mongo_db: Database, processes: Processes
) -> None:
    # Magic numbers: ...0002 never answers, ...0001 answers, ...0005 answers the 2nd attempt.
    never = [f"+1212{200 + i}0002" for i in range(10)]
    always = [f"+1212{200 + i}0001" for i in range(10)]
    second = [f"+1212{200 + i}0005" for i in range(10)]
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=never + always + second,
        start_at=START,
        end_at=START + timedelta(hours=9),
        now=SIM_START,
        speed=5,
        retry=2,
        retry_interval=30,
    )
    start_engine(processes)
    doc = await completed(mongo_db, campaign_uuid)

    records = await dials(mongo_db, campaign_uuid)
    assert duplicate_attempts(records) == []
    by_phone = defaultdict(list)
    for r in records:
        by_phone[r["phone_number"]].append(r)
    assert all(len(by_phone[p]) == 3 for p in never)
    assert all(len(by_phone[p]) == 1 for p in always)
    assert all(len(by_phone[p]) == 2 for p in second)
    for attempts in by_phone.values():
        attempts.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in attempts] == list(range(1, len(attempts) + 1))
        for before, after in itertools.pairwise(attempts):
            assert after["started_at"] >= before["ended_at"] + timedelta(minutes=30)
    assert doc["stats"]["NO_ANSWER"] == 10
    assert doc["stats"]["COMPLETED"] == 20
    calls = [c async for c in mongo_db["calls"].find({"campaign_uuid": campaign_uuid})]
    for call in calls:
        assert (
            call["attempts"] == len(call["attempt_history"]) == len(by_phone[call["phone_number"]])
        )
        assert call["result"]["outcome"] == call["attempt_history"][-1]["outcome"]
    assert await consistency_problems(mongo_db, campaign_uuid) == []


async def test_window_close_expires_leftovers_without_transfer(
    mongo_db: Database, processes: Processes
) -> None:
    # All answer and talk 10 minutes: 608 s a call, so speed 2 fits at most 6 calls into
    # the 30-minute window, however fast the engine is; the other 34 or more expire.
    phones = [f"+1212{200 + i}0001" for i in range(40)]
    end = START + timedelta(minutes=30)
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=phones,
        start_at=START,
        end_at=end,
        now=SIM_START,
        speed=2,
    )
    start_engine(processes, SIM_TALK_SECONDS="600")
    doc = await completed(mongo_db, campaign_uuid)
    records = await dials(mongo_db, campaign_uuid)
    assert 0 < len(records) <= 6, "some calls are dialed inside the window, and only those"
    assert all(START <= r["started_at"] < end for r in records)
    assert max_in_progress([(r["started_at"], r["ended_at"]) for r in records]) <= 2
    assert doc["stats"]["EXPIRED"] == 40 - len(records) >= 34
    assert doc["stats"]["COMPLETED"] == len(records)
    assert await consistency_problems(mongo_db, campaign_uuid) == []


@pytest.fixture
def fast_clock_env(clock_env: dict[str, str]) -> dict[str, str]:
    # One campaign hour per second; an attempt lease of 10 campaign hours is 10 s of wall time.
    return {**clock_env, "CLOCK_RATE": "3600", "ATTEMPT_LEASE_SECONDS": "36000"}


async def test_transfer_next_day_dials_leftovers_in_the_same_hours(
    mongo_db: Database,
    service_env: dict[str, str],
    fast_clock_env: dict[str, str],
    tmp_path: object,
) -> None:
    from pathlib import Path

    processes = Processes({**service_env, **fast_clock_env}, Path(str(tmp_path)))
    # Six calls that answer and talk 10 minutes (608 s each) cannot all fit into one
    # 30-minute window at speed 1. The ...0005 number goes unanswered first: its retry
    # falls due 30 minutes after that attempt ended, always after the window closed, so
    # it is carried to a later day with its one remaining attempt.
    retried = "+12122990005"
    phones = [retried] + [f"+1212{200 + i}0001" for i in range(6)]
    try:
        end = START + timedelta(minutes=30)
        campaign_uuid = await seed_campaign(
            mongo_db,
            phones=phones,
            start_at=START,
            end_at=end,
            now=SIM_START,
            speed=1,
            retry=1,
            retry_interval=30,
            transfer_next_day=True,
        )
        start_engine(processes, workers=1, SIM_TALK_SECONDS="600")
        doc = await completed(mongo_db, campaign_uuid, within=180)
    finally:
        codes = processes.stop_all()
    assert not any(codes.values()), processes.logs()
    records = await dials(mongo_db, campaign_uuid)
    assert len(records) == 8 and duplicate_attempts(records) == []
    days = {r["started_at"].date() for r in records}
    assert len(days) >= 2, "leftovers were carried to a later day"
    for r in records:
        shift = timedelta(days=(r["started_at"].date() - START.date()).days)
        assert START + shift <= r["started_at"] < end + shift
    first, second = sorted(
        (r for r in records if r["phone_number"] == retried), key=lambda r: r["attempt"]
    )
    assert (first["attempt"], first["outcome"]) == (1, "NO_ANSWER")
    assert (second["attempt"], second["outcome"]) == (2, "ANSWERED")
    assert second["started_at"].date() > first["started_at"].date()
    assert doc["stats"]["COMPLETED"] == 7
    assert await consistency_problems(mongo_db, campaign_uuid) == []


async def test_two_firms_keep_their_own_limits(mongo_db: Database, processes: Processes) -> None:
    a = await seed_campaign(
        mongo_db,
        phones=[f"+1212{200 + i}0001" for i in range(60)],
        start_at=START,
        end_at=START + timedelta(hours=9),
        now=SIM_START,
        speed=3,
        firm_id="firm-a",
    )
    b = await seed_campaign(
        mongo_db,
        phones=[f"+1415{200 + i}0001" for i in range(60)],
        start_at=START,
        end_at=START + timedelta(hours=9),
        now=SIM_START,
        speed=4,
        firm_id="firm-b",
    )
    start_engine(processes, schedulers=2, workers=2)
    await completed(mongo_db, a)
    await completed(mongo_db, b)
    spans = []
    for campaign_uuid, speed in ((a, 3), (b, 4)):
        records = await dials(mongo_db, campaign_uuid)
        assert len(records) == 60
        assert max_in_progress([(r["started_at"], r["ended_at"]) for r in records]) == speed
        assert await consistency_problems(mongo_db, campaign_uuid) == []
        spans.append((min(r["started_at"] for r in records), max(r["ended_at"] for r in records)))
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end, "the two campaigns ran at the same time"
