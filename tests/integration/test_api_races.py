"""Deletes racing the scheduler's dispatch claim: a call is never both reported deleted and
dialed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import (
    DEFAULT_MAX_SPEED,
    Api,
    phone,
    record,
    running_api,
)

BASE = "/api/v1/call-campaign"
#: Every call can be in progress at once: the claims never run out of slots.
CALLS = DEFAULT_MAX_SPEED
NUMBERS = CALLS // 2


@pytest.fixture
async def api(servers: Servers, mongo_db: Database, amqp_prefix: str) -> AsyncIterator[Api]:
    async with running_api(servers, mongo_db, amqp_prefix) as running:
        yield running


async def claimer(
    api: Api, uid: str, seqs: list[int], claimed: set[str], started: asyncio.Event
) -> None:
    """Dispatch two calls at a time, in ``seqs`` order, with the scheduler's own claim."""
    for i in range(0, len(seqs), 2):
        claimed.update(await api.scheduler.claim(uid, seqs[i : i + 2]))
        started.set()
        await asyncio.sleep(0)  # let the API requests interleave


async def published(
    api: Api, uid: str, claimed: set[str], reported: set[str]
) -> tuple[set[str], set[str]]:
    """The calls announced dispatched and deleted, once as many events as answers arrived."""
    await api.events.wait_for("call.dispatched", uid, count=len(claimed))
    await api.events.wait_for("call.deleted", uid, count=len(reported))
    dispatched = [e.data["call_uuid"] for e in api.events.of("call.dispatched", uid)]
    assert len(dispatched) == len(set(dispatched)), "a call was dispatched twice"
    deleted = {e.data["call_uuid"] for e in api.events.of("call.deleted", uid)}
    return set(dispatched), deleted


async def test_delete_by_phone_is_all_or_nothing_while_dispatch_runs(api: Api) -> None:
    # Each number has two calls, far apart in the queue: the claimer often holds one of a
    # number's calls while the other is still PENDING, which must answer 409 untouched.
    created = await api.create(0, allow_dynamic_call_appending=True, speed=CALLS)
    uid = created["uuid"]
    records = [record(i) for i in range(NUMBERS)] * 2
    status, added = await api.call(
        "POST", f"{BASE}/{uid}/call-records", json_body={"call_records": records}
    )
    assert status == 200
    ids = added["call_uuids"]
    seqs = [c["seq"] for c in await api.calls(uid)]
    claimed: set[str] = set()
    started = asyncio.Event()
    dispatch = asyncio.create_task(claimer(api, uid, seqs, claimed, started))
    await started.wait()
    answers = await asyncio.gather(
        *(api.call("DELETE", f"{BASE}/{uid}/phone-numbers/{phone(i)}") for i in range(NUMBERS))
    )
    await dispatch

    statuses = {status for status, _ in answers}
    assert statuses <= {200, 409} and 409 in statuses
    remaining = {c["_id"]: c for c in await api.calls(uid)}
    reported: set[str] = set()
    for i, (status, body) in enumerate(answers):
        mine = {ids[i], ids[NUMBERS + i]}
        if status == 200:
            deleted = set(body["deleted"])
            reported |= deleted
            assert deleted and deleted <= mine
            assert not deleted & claimed, "a call was reported deleted and was dispatched"
            assert not deleted & set(remaining)
            assert mine - deleted <= claimed  # what was not deleted had been dispatched
        else:
            assert "nothing was deleted" in body["error"]["message"]
            assert mine <= set(remaining), "a 409 must delete nothing"
            assert mine & claimed
    assert claimed <= set(remaining)
    assert all(remaining[c]["status"] == "IN_PROGRESS" for c in claimed)
    dispatched, deleted_events = await published(api, uid, claimed, reported)
    assert dispatched == claimed and deleted_events == reported
    assert not dispatched & deleted_events
    campaign = await api.campaign(uid)
    pending = sum(1 for c in remaining.values() if c["status"] == "PENDING")
    assert campaign["stats"]["total"] == len(remaining)
    assert campaign["stats"]["PENDING"] == pending
    assert campaign["stats"]["IN_PROGRESS"] == len(claimed)


async def test_delete_by_uuid_never_deletes_a_dispatched_call(api: Api) -> None:
    created = await api.create(CALLS, speed=CALLS)
    uid = created["uuid"]
    calls = await api.calls(uid)
    ids = [c["_id"] for c in calls]
    claimed: set[str] = set()
    started = asyncio.Event()
    dispatch = asyncio.create_task(claimer(api, uid, [c["seq"] for c in calls], claimed, started))
    await started.wait()
    answers = await asyncio.gather(
        *(api.call("DELETE", f"{BASE}/{uid}/calls/{call}") for call in reversed(ids))
    )
    await dispatch
    remaining = {c["_id"] for c in await api.calls(uid)}
    reported: set[str] = set()
    for call, (status, body) in zip(reversed(ids), answers, strict=True):
        if status == 200:
            assert body == {"deleted": call}
            assert call not in claimed and call not in remaining
            reported.add(call)
        else:
            assert status == 409 and call in claimed and "retries" in body["error"]["message"]
    assert claimed | reported == set(ids) and reported and claimed
    dispatched, deleted_events = await published(api, uid, claimed, reported)
    assert dispatched == claimed and deleted_events == reported
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == len(remaining) == len(claimed)
    assert campaign["stats"]["PENDING"] == 0
    assert campaign["stats"]["IN_PROGRESS"] == len(claimed)
