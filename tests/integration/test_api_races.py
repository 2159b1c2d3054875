"""Deletes racing a concurrent dispatch: a call is never both reported deleted and dialed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import Api, phone, record, running_api

BASE = "/api/v1/call-campaign"
NUMBERS = 40


@pytest.fixture
async def api(servers: Servers, mongo_db: Database, amqp_prefix: str) -> AsyncIterator[Api]:
    async with running_api(servers, mongo_db, amqp_prefix) as running:
        yield running


async def claimer(
    api: Api, uid: str, order: list[str], claimed: set[str], started: asyncio.Event
) -> None:
    """Dispatch two calls at a time, in ``order``, as fast as the database allows."""
    for i in range(0, len(order), 2):
        claimed.update(await api.claim(uid, order[i : i + 2]))
        started.set()
        await asyncio.sleep(0)  # let the API requests interleave


async def test_delete_by_phone_is_all_or_nothing_while_dispatch_runs(api: Api) -> None:
    # Each number has two calls, far apart in the queue: the claimer often holds one of a
    # number's calls while the other is still PENDING, which must answer 409 untouched.
    created = await api.create(0, allow_dynamic_call_appending=True)
    uid = created["uuid"]
    records = [record(i) for i in range(NUMBERS)] * 2
    status, added = await api.call(
        "POST", f"{BASE}/{uid}/call-records", json_body={"call_records": records}
    )
    assert status == 200
    ids = added["call_uuids"]
    claimed: set[str] = set()
    started = asyncio.Event()
    dispatch = asyncio.create_task(claimer(api, uid, ids, claimed, started))
    await started.wait()
    answers = await asyncio.gather(
        *(api.call("DELETE", f"{BASE}/{uid}/phone-numbers/{phone(i)}") for i in range(NUMBERS))
    )
    await dispatch

    statuses = {status for status, _ in answers}
    assert statuses <= {200, 409} and 409 in statuses
    remaining = {c["_id"]: c for c in await api.calls(uid)}
    for i, (status, body) in enumerate(answers):
        mine = {ids[i], ids[NUMBERS + i]}
        if status == 200:
            deleted = set(body["deleted"])
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
    campaign = await api.campaign(uid)
    pending = sum(1 for c in remaining.values() if c["status"] == "PENDING")
    assert campaign["stats"]["total"] == len(remaining)
    assert campaign["stats"]["PENDING"] == pending
    assert campaign["stats"]["IN_PROGRESS"] == len(claimed)


async def test_delete_by_uuid_never_deletes_a_dispatched_call(api: Api) -> None:
    created = await api.create(60)
    uid = created["uuid"]
    ids = [c["_id"] for c in await api.calls(uid)]
    claimed: set[str] = set()
    started = asyncio.Event()
    dispatch = asyncio.create_task(claimer(api, uid, ids, claimed, started))
    await started.wait()
    answers = await asyncio.gather(
        *(api.call("DELETE", f"{BASE}/{uid}/calls/{call}") for call in reversed(ids))
    )
    await dispatch
    remaining = {c["_id"] for c in await api.calls(uid)}
    for call, (status, body) in zip(reversed(ids), answers, strict=True):
        if status == 200:
            assert body == {"deleted": call}
            assert call not in claimed and call not in remaining
        else:
            assert status == 409 and call in claimed and "retries" in body["error"]["message"]
    assert claimed | {
        c for c, (s, _) in zip(reversed(ids), answers, strict=True) if s == 200
    } == set(ids)
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == len(remaining) == len(claimed)
    assert campaign["stats"]["PENDING"] == 0
