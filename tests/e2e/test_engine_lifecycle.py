"""Campaigns that end early: canceled by the operator, failed by the engine; deletes that
race the running engine. Real API, scheduler and worker processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import aio_pika
import pytest

from shared.messaging.topology import Names, declare
from shared.storage.mongo import Database
from tests.e2e.conftest import Api, campaign_body, record
from tests.support.amqp import next_message
from tests.support.analysis import campaign, consistency_problems, dials, eventually
from tests.support.processes import DIALER, Processes

pytestmark = pytest.mark.e2e


def run_dialer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIALER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def calls_of(db: Database, campaign_uuid: str) -> dict[str, dict[str, Any]]:
    return {c["_id"]: c async for c in db["calls"].find({"campaign_uuid": campaign_uuid})}


async def test_operator_cancel_stops_dialing_and_lets_calls_under_way_finish(
    api: Api, processes: Processes, mongo_db: Database, service_env: dict[str, str]
) -> None:
    # 40 numbers that never answer (3 attempts each) ring 100 campaign minutes (10 s of
    # wall time): calls under way when the cancel lands are still ringing after it.
    phones = [f"+1212{200 + i}0002" for i in range(40)]
    status, created = await api.call(
        "POST", "/call-campaign", campaign_body(phones, speed=3, retry=2, retry_interval=5)
    )
    assert status == 201, created
    uuid = created["uuid"]
    connection = await aio_pika.connect(service_env["AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        topology = await declare(channel, Names(service_env["AMQP_PREFIX"]))
        events = await channel.declare_queue(exclusive=True)
        await events.bind(topology.events, routing_key=f"campaign.status_changed.{uuid}")

        processes.start("scheduler-0", "scheduler")
        processes.start("worker-0", "worker", SIM_RING_SECONDS="6000")
        await eventually(
            lambda: campaign(mongo_db, uuid),
            lambda c: c["stats"]["IN_PROGRESS"] == 3 and c["stats"]["NO_ANSWER"] == 0,
            60,
            "three calls in progress",
        )
        canceled = await asyncio.to_thread(
            run_dialer,
            processes.env,
            "campaigns",
            "cancel",
            uuid,
            "--reason",
            "customer asked to stop",
            "--json",
        )
        assert canceled.returncode == 0, canceled.stderr
        out = json.loads(canceled.stdout)
        assert out["status"] == "CANCELED" and out["previous_status"] == "PROCESSING"
        # Right after the cancel: nothing PENDING, the calls under way marked as last.
        at_cancel = await calls_of(mongo_db, uuid)
        assert not [c for c in at_cancel.values() if c["status"] == "PENDING"]
        under_way = {k for k, c in at_cancel.items() if c["status"] == "IN_PROGRESS"}
        assert under_way and all(at_cancel[k].get("cancel_requested") for k in under_way)

        changes = []
        while not changes or changes[-1]["data"]["status"] != "CANCELED":
            changes.append(json.loads((await next_message(events, within=30)).body))
        assert changes[-1]["data"] == {"status": "CANCELED", "reason": "customer asked to stop"}

    doc = await eventually(
        lambda: campaign(mongo_db, uuid),
        lambda c: c["stats"]["IN_PROGRESS"] == 0,
        60,
        "the calls under way finished",
    )
    assert (doc["status"], doc["status_reason"]) == ("CANCELED", "customer asked to stop")
    final = await calls_of(mongo_db, uuid)
    for call_uuid, call in final.items():
        # No attempt started after the cancel: every call kept its attempt count.
        assert call["attempts"] == at_cancel[call_uuid]["attempts"], call_uuid
    for call_uuid in under_way:  # finished with its own outcome, no retry after it
        assert final[call_uuid]["status"] == "CANCELED"
        assert final[call_uuid]["attempt_history"][-1]["outcome"] == "NO_ANSWER"
    assert doc["stats"]["CANCELED"] == sum(1 for c in final.values() if c["status"] == "CANCELED")
    assert await consistency_problems(mongo_db, uuid) == []

    status, body = await api.call(
        "POST", f"/call-campaign/{uuid}/call-records", {"call_records": [record("+12129980001")]}
    )
    assert status == 400, body
    again = await asyncio.to_thread(run_dialer, processes.env, "campaigns", "cancel", uuid)
    assert again.returncode == 1 and "campaign is CANCELED" in again.stderr
    missing = await asyncio.to_thread(
        run_dialer, processes.env, "campaigns", "cancel", "00000000-0000-4000-8000-000000000000"
    )
    assert missing.returncode == 1 and "no such campaign" in missing.stderr


async def test_engine_fails_a_campaign_it_cannot_proceed_with(
    api: Api, processes: Processes, mongo_db: Database
) -> None:
    status, created = await api.call(
        "POST", "/call-campaign", campaign_body([f"+1212{200 + i}0001" for i in range(5)])
    )
    assert status == 201, created
    uuid = created["uuid"]
    # A document the engine cannot work with (a hand edit, a botched migration).
    await mongo_db["campaigns"].update_one({"_id": uuid}, {"$set": {"next_seq": "many"}})
    processes.start("scheduler-0", "scheduler")
    processes.start("worker-0", "worker")
    doc = await eventually(
        lambda: campaign(mongo_db, uuid), lambda c: c["status"] == "FAILED", 60, "FAILED"
    )
    assert doc["status_reason"].startswith("the engine cannot proceed: TypeError")
    assert doc["stats"]["FAILED"] == 5 and doc["stats"]["PENDING"] == 0
    assert await dials(mongo_db, uuid) == []
    _, details = await api.call("GET", f"/call-campaign/{uuid}")
    assert details["campaign"]["status"] == "FAILED"
    assert details["campaign"]["status_reason"] == doc["status_reason"]
    assert {c["status"] for c in details["calls"]["items"]} == {"FAILED"}


async def test_a_call_reported_deleted_is_never_dialed_while_the_engine_runs(
    api: Api, processes: Processes, mongo_db: Database
) -> None:
    # 120 numbers that answer at once; deletes race the dispatch frontier.
    phones = [f"+1212{200 + i}0001" for i in range(120)]
    status, created = await api.call("POST", "/call-campaign", campaign_body(phones, speed=4))
    assert status == 201
    uuid = created["uuid"]
    _, page = await api.call("GET", f"/call-campaign/{uuid}/calls?per_page=100")
    order = [c["uuid"] for c in page["items"]]
    processes.start("scheduler-0", "scheduler")
    processes.start("worker-0", "worker", SIM_RING_SECONDS="60", SIM_TALK_SECONDS="0")
    await eventually(
        lambda: campaign(mongo_db, uuid),
        lambda c: c["stats"]["COMPLETED"] >= 4,
        60,
        "dialing under way",
    )
    deleted: set[str] = set()
    refused: set[str] = set()
    by_phone_deleted: set[str] = set()
    # Walk the queue just ahead of dispatch: each call is deleted (200) or already taken (409).
    for i, call_uuid in enumerate(order[8:96]):
        if i % 4 == 3:  # every fourth one by its number
            phone = phones[8 + i]
            status, body = await api.call("DELETE", f"/call-campaign/{uuid}/phone-numbers/{phone}")
            assert status in (200, 409), body
            if status == 200:
                by_phone_deleted.update(body["deleted"])
            else:
                refused.add(call_uuid)
            continue
        status, body = await api.call("DELETE", f"/call-campaign/{uuid}/calls/{call_uuid}")
        assert status in (200, 409), body
        (deleted if status == 200 else refused).add(call_uuid)
    await eventually(
        lambda: campaign(mongo_db, uuid), lambda c: c["status"] == "COMPLETED", 120, "COMPLETED"
    )
    dialed = {r["call_uuid"] for r in await dials(mongo_db, uuid)}
    assert deleted | by_phone_deleted, "some calls were deleted before their turn"
    assert not (deleted | by_phone_deleted) & dialed, "a call reported deleted was dialed"
    assert refused <= dialed, "a 409 means the call was taken (in progress or finished)"
    remaining = await calls_of(mongo_db, uuid)
    assert not (deleted | by_phone_deleted) & set(remaining)
    assert len(remaining) == 120 - len(deleted | by_phone_deleted)
    assert await consistency_problems(mongo_db, uuid) == []
