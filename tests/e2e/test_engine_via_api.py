"""The whole stack as a client sees it: API, scheduler and workers as real processes."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from shared.storage.mongo import Database
from tests.e2e.conftest import Api, campaign_body, record
from tests.support.analysis import campaign, consistency_problems, dials, eventually
from tests.support.processes import DIALER, Processes

pytestmark = pytest.mark.e2e


async def test_append_while_processing_and_deletes_while_dialing(
    api: Api, processes: Processes, mongo_db: Database
) -> None:
    phones = [f"+1212{200 + i}0001" for i in range(12)]  # all answer
    status, created = await api.call(
        "POST",
        "/call-campaign",
        campaign_body(
            [*phones, "+12129990002"], retry=3, retry_interval=30, allow_dynamic_call_appending=True
        ),
    )
    assert status == 201, created
    uuid = created["uuid"]
    _, page = await api.call("GET", f"/call-campaign/{uuid}/calls?per_page=100")
    by_phone = {c["phone_number"]: c["uuid"] for c in page["items"]}
    last = by_phone[phones[-1]]
    # Delete the last (still PENDING) call before the engine reaches it.
    status, body = await api.call("DELETE", f"/call-campaign/{uuid}/calls/{last}")
    assert (status, body) == (200, {"deleted": last})

    processes.start("scheduler-0", "scheduler")
    # Calls ring for 10 campaign minutes (1 s of wall time): long enough to delete one.
    processes.start("worker-0", "worker", SIM_RING_SECONDS="600")
    await eventually(
        lambda: campaign(mongo_db, uuid), lambda c: c["status"] == "PROCESSING", 60, "PROCESSING"
    )
    status, appended = await api.call(
        "POST", f"/call-campaign/{uuid}/call-records", {"call_records": [record("+12129980001")]}
    )
    assert status == 200 and appended["call_records_added"] == 1, appended

    # The never-answering number is in progress at some point: deleting it cancels retries.
    never = by_phone["+12129990002"]

    async def in_progress() -> str:
        _, d = await api.call("GET", f"/call-campaign/{uuid}?call_uuid={never}")
        return str(d["calls"]["items"][0]["status"])

    await eventually(in_progress, lambda s: s == "IN_PROGRESS", 60, "call IN_PROGRESS")
    status, _ = await api.call("DELETE", f"/call-campaign/{uuid}/calls/{never}")
    assert status == 409

    await eventually(
        lambda: campaign(mongo_db, uuid), lambda c: c["status"] == "COMPLETED", 120, "COMPLETED"
    )
    records = await dials(mongo_db, uuid)
    dialed = {r["call_uuid"] for r in records}
    assert last not in dialed
    assert appended["call_uuids"][0] in dialed
    assert sum(1 for r in records if r["call_uuid"] == never) == 1  # retries cancelled
    _, d = await api.call("GET", f"/call-campaign/{uuid}?call_uuid={never}")
    assert d["calls"]["items"][0]["status"] == "CANCELED"
    assert await consistency_problems(mongo_db, uuid) == []


async def test_append_refused_while_processing_without_dynamic_appending(
    api: Api, processes: Processes, mongo_db: Database
) -> None:
    status, created = await api.call(
        "POST", "/call-campaign", campaign_body([f"+1212{200 + i}0001" for i in range(20)])
    )
    assert status == 201
    processes.start("scheduler-0", "scheduler")
    processes.start("worker-0", "worker")
    uuid = created["uuid"]
    await eventually(
        lambda: campaign(mongo_db, uuid), lambda c: c["status"] == "PROCESSING", 60, "PROCESSING"
    )
    before = await campaign(mongo_db, uuid)
    status, body = await api.call(
        "POST", f"/call-campaign/{uuid}/call-records", {"call_records": [record("+12129980001")]}
    )
    assert status == 400, body
    after = await campaign(mongo_db, uuid)
    assert after["stats"]["total"] == before["stats"]["total"] == 20


async def test_demo_runs_a_campaign_to_completion_and_summarises_it(
    api: Api, processes: Processes
) -> None:
    processes.start("scheduler-0", "scheduler")
    processes.start("worker-0", "worker")
    key = api.headers["x-cybernet-api-key"]
    base = api.base.removesuffix("/api/v1")
    demo = await asyncio.to_thread(
        subprocess.run,
        [
            DIALER,
            "demo",
            "--url",
            base,
            "--key",
            key,
            "--calls",
            "40",
            "--speed",
            "8",
            "--retry",
            "1",
        ],
        env=processes.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "40 calls, speed 8" in demo.stdout
    assert "campaign COMPLETED" in demo.stdout
    summary = dict(line.split() for line in demo.stdout.splitlines()[-6:])
    assert sum(int(v) for v in summary.values()) == 40
