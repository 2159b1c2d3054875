"""Every row of the contract's endpoint table: each success and each listed error code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.api.openapi import DOCUMENTED_EXAMPLE
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_support import (
    Api,
    iso,
    phone,
    record,
    running_api,
)

BASE = "/api/v1/call-campaign"


#: The create request exactly as CONTRACT.md shows it (text, not a re-serialised dict).
DOCUMENTED_BODY = """{
  "call_campaign_name": "January Outreach",
  "start_at": "2026-01-15T09:00:00.000Z",
  "end_at": "2026-01-15T18:00:00.000Z",
  "retry": 2,
  "speed": 5,
  "retry_interval": 30,
  "day_unique": "delete",
  "transfer_next_day": false,
  "allow_dynamic_call_appending": false,
  "call_records": [
    {"phone_number": "77012345678", "language": "RU", "gender_voice": "male",
     "agent_name": "sales_agent_v2",
     "variables": {"client_name": "John Doe", "debt_amount": 15000,
                   "contract_type": "auto_loan", "foreign_id": "CRM-12345"}}
  ]
}"""


def assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


# -- 1. create ---------------------------------------------------------------------------


async def test_documented_example_posted_verbatim_is_created(api: Api) -> None:
    assert json.loads(DOCUMENTED_BODY) == DOCUMENTED_EXAMPLE
    status, body = await api.call(
        "POST", BASE, data=DOCUMENTED_BODY, headers={"content-type": "application/json"}
    )
    assert status == 201, body
    assert body["call_campaign_name"] == "January Outreach"
    assert body["start_at"] == "2026-01-15T09:00:00.000Z"
    assert body["end_at"] == "2026-01-15T18:00:00.000Z"
    assert (body["retry"], body["speed"], body["retry_interval"]) == (2, 5, 30)
    assert body["day_unique"] == "delete" and body["transfer_next_day"] is False
    assert (body["call_records_added"], body["duplicates_removed"]) == (1, 0)
    assert body["stats"]["total"] == 1 and body["stats"]["PENDING"] == 1
    assert body["created_at"].endswith("Z") and "call_records" not in body
    [call] = await api.calls(body["uuid"])
    assert call["phone_number"] == "+77012345678" and call["language"] == "RU"
    assert call["max_attempts"] == 3 and call["seq"] == 0 and call["status"] == "PENDING"
    assert call["dedup_key"].endswith("|+77012345678")
    [event] = await api.events.wait_for("campaign.created", body["uuid"])
    assert event.firm_id == "firm-a" and event.data["call_records_added"] == 1
    assert event.schema_version == 1 and event.message_id and event.occurred_at.tzinfo


async def test_create_stores_calls_pages_stats_and_drops_same_day_duplicates(api: Api) -> None:
    records = [record(0), record(1), record(0, language="kk"), record(2), record(1)]
    start = datetime.now(UTC) + timedelta(days=1)
    status, body = await api.call(
        "POST",
        BASE,
        json_body={
            "call_campaign_name": "  Dedup  ",
            "start_at": iso(start),
            "end_at": iso(start + timedelta(hours=2)),
            "day_unique": "delete",
            "call_records": records,
        },
    )
    assert status == 201, body
    assert body["call_campaign_name"] == "Dedup" and body["status"] == "PENDING"
    assert (body["call_records_added"], body["duplicates_removed"]) == (3, 2)
    calls = await api.calls(body["uuid"])
    assert [c["phone_number"] for c in calls] == [phone(0), phone(1), phone(2)]
    assert [c["seq"] for c in calls] == [0, 1, 2]
    assert all(
        c["next_attempt_at"] == start.replace(microsecond=start.microsecond // 1000 * 1000)
        for c in calls
    )
    assert calls[0]["days"] == [start.date().isoformat()]
    page = await api.db["call_pages"].find_one({"_id": f"{body['uuid']}:0"})
    assert page is not None and page["count"] == 3
    campaign = await api.campaign(body["uuid"])
    assert campaign["next_seq"] == 3 and campaign["stats"]["total"] == 3
    assert campaign["stats"]["IN_PROGRESS"] == 0 and campaign["firm_id"] == "firm-a"


async def test_create_empty_campaign_is_allowed(api: Api) -> None:
    created = await api.create(0)
    assert created["stats"]["total"] == 0 and created["status"] == "PROCESSING"


async def test_create_422_lists_every_problem_with_its_path(api: Api) -> None:
    body = json.loads(DOCUMENTED_BODY)
    body["retry"] = 11
    body["colour"] = "red"
    body["call_records"] = [
        record(0),
        record(1),
        record(2),
        record(3, phone_number="12", gender_voice="robot"),
    ]
    status, answer = await api.call("POST", BASE, json_body=body)
    assert status == 422
    assert_error(answer, "validation_failed")
    locs = [d["loc"] for d in answer["error"]["details"]]
    assert ["body", "retry"] in locs and ["body", "colour"] in locs
    assert ["body", "call_records", 3, "phone_number"] in locs
    assert ["body", "call_records", 3, "gender_voice"] in locs
    assert await api.db["campaigns"].count_documents({}) == 0


async def test_create_422_when_speed_exceeds_the_firm_limit(api: Api) -> None:
    status, answer = await api.call(
        "POST", BASE, json_body={**json.loads(DOCUMENTED_BODY), "speed": 51}
    )
    assert status == 422 and answer["error"]["details"][0]["loc"] == ["body", "speed"]
    await api.db["firms"].insert_one({"_id": "firm-a", "max_speed": 4})
    status, answer = await api.call("POST", BASE, json_body=json.loads(DOCUMENTED_BODY))
    assert status == 422 and "at most 4" in answer["error"]["details"][0]["msg"]
    await api.db["firms"].update_one({"_id": "firm-a"}, {"$set": {"max_speed": 500}})
    status, _ = await api.call(
        "POST", BASE, json_body={**json.loads(DOCUMENTED_BODY), "speed": 500}
    )
    assert status == 201


# -- 2. append ---------------------------------------------------------------------------


async def test_append_200_assigns_new_seqs_and_publishes(api: Api) -> None:
    created = await api.create(2, allow_dynamic_call_appending=True)
    uid = created["uuid"]
    status, body = await api.call(
        "POST", f"{BASE}/{uid}/call-records", json_body={"call_records": [record(5), record(6)]}
    )
    assert status == 200, body
    assert body["campaign_uuid"] == uid and body["status"] == "PROCESSING"
    assert (body["call_records_added"], body["duplicates_removed"]) == (2, 0)
    calls = await api.calls(uid)
    assert [c["seq"] for c in calls] == [0, 1, 2, 3]
    assert [c["_id"] for c in calls[2:]] == body["call_uuids"]
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == 4 and campaign["stats"]["PENDING"] == 4
    [event] = await api.events.wait_for("campaign.appended", uid)
    assert event.data["call_records_added"] == 2
    assert (event.data["seq_from"], event.data["seq_to"]) == (2, 4)


async def test_append_to_a_pending_campaign_keeps_it_pending(api: Api) -> None:
    start = datetime.now(UTC) + timedelta(hours=3)
    status, created = await api.call(
        "POST",
        BASE,
        json_body={
            "call_campaign_name": "later",
            "start_at": iso(start),
            "end_at": iso(start + timedelta(hours=1)),
            "call_records": [],
        },
    )
    assert status == 201 and created["status"] == "PENDING"
    status, body = await api.call(
        "POST", f"{BASE}/{created['uuid']}/call-records", json_body={"call_records": [record(1)]}
    )
    assert status == 200 and body["status"] == "PENDING"
    [call] = await api.calls(created["uuid"])
    assert call["next_attempt_at"] == start.replace(microsecond=start.microsecond // 1000 * 1000)


async def test_append_drops_duplicates_of_earlier_requests_the_same_day(api: Api) -> None:
    created = await api.create(3, day_unique="delete", allow_dynamic_call_appending=True)
    uid = created["uuid"]
    status, body = await api.call(
        "POST",
        f"{BASE}/{uid}/call-records",
        json_body={"call_records": [record(1), record(3), record(3), record(2), record(4)]},
    )
    assert status == 200, body
    assert (body["call_records_added"], body["duplicates_removed"]) == (2, 3)
    calls = await api.calls(uid)
    assert [c["phone_number"] for c in calls] == [phone(i) for i in (0, 1, 2, 3, 4)]
    assert {c["_id"] for c in calls[3:]} == set(body["call_uuids"])
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == 5 and campaign["stats"]["PENDING"] == 5
    pages = await api.db["call_pages"].find_one({"_id": f"{uid}:0"})
    assert pages is not None and pages["count"] == 5


class SetClock:
    """Campaign time that stands still until the test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def wall_seconds(self, campaign_seconds: float) -> float:
        return campaign_seconds

    async def sleep(self, campaign_seconds: float) -> None:
        await asyncio.sleep(campaign_seconds)


#: 23:59 on day D (UTC), one minute before D + 1
BEFORE_MIDNIGHT = datetime(2031, 5, 10, 23, 59, tzinfo=UTC)


@pytest.fixture
async def clocked(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> AsyncIterator[tuple[Api, SetClock]]:
    clock = SetClock(BEFORE_MIDNIGHT)
    async with running_api(servers, mongo_db, amqp_prefix, clock=clock) as running:
        yield running, clock


async def test_day_unique_keeps_a_number_again_on_the_next_utc_day(
    clocked: tuple[Api, SetClock],
) -> None:
    api, clock = clocked
    d, next_day = "2031-05-10", "2031-05-11"
    status, created = await api.call(
        "POST",
        BASE,
        json_body={
            "call_campaign_name": "across midnight",
            "start_at": iso(BEFORE_MIDNIGHT - timedelta(hours=4)),
            "end_at": iso(BEFORE_MIDNIGHT + timedelta(hours=4)),
            "day_unique": "delete",
            "allow_dynamic_call_appending": True,
            "call_records": [record(1), record(2)],
        },
    )
    assert status == 201 and created["status"] == "PROCESSING", created
    uid = created["uuid"]

    async def append(*numbers: int) -> tuple[int, int]:
        records = [record(i) for i in numbers]
        status, body = await api.call(
            "POST", f"{BASE}/{uid}/call-records", json_body={"call_records": records}
        )
        assert status == 200, body
        return body["call_records_added"], body["duplicates_removed"]

    clock.at = BEFORE_MIDNIGHT + timedelta(seconds=59, microseconds=999_000)  # still day D
    assert await append(1, 3) == (1, 1)
    clock.at = BEFORE_MIDNIGHT + timedelta(minutes=1)  # 00:00:00 of D + 1
    assert await append(1, 1, 2) == (2, 1)  # kept once each; the second 1 is this day's
    clock.at += timedelta(hours=1)
    assert await append(2, 3) == (1, 1)  # 3 is new today, 2 is not

    calls = await api.calls(uid)
    assert [(c["phone_number"], c["dedup_key"]) for c in calls] == [
        (phone(1), f"{d}|{phone(1)}"),
        (phone(2), f"{d}|{phone(2)}"),
        (phone(3), f"{d}|{phone(3)}"),
        (phone(1), f"{next_day}|{phone(1)}"),
        (phone(2), f"{next_day}|{phone(2)}"),
        (phone(3), f"{next_day}|{phone(3)}"),
    ]
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == 6 and campaign["stats"]["PENDING"] == 6


async def test_append_400_for_final_or_running_campaigns(api: Api) -> None:
    locked = await api.create(1)  # PROCESSING, allow_dynamic_call_appending false
    status, body = await api.call(
        "POST", f"{BASE}/{locked['uuid']}/call-records", json_body={"call_records": [record(9)]}
    )
    assert status == 400 and "allow_dynamic_call_appending" in body["error"]["message"]
    assert_error(body, "invalid_state")
    for final in ("COMPLETED", "FAILED", "CANCELED"):
        created = await api.create(1, allow_dynamic_call_appending=True)
        await api.db["campaigns"].update_one({"_id": created["uuid"]}, {"$set": {"status": final}})
        status, body = await api.call(
            "POST",
            f"{BASE}/{created['uuid']}/call-records",
            json_body={"call_records": [record(9)]},
        )
        assert status == 400 and final in body["error"]["message"]
        assert len(await api.calls(created["uuid"])) == 1
        assert (await api.campaign(created["uuid"]))["next_seq"] == 1


async def test_append_404_and_422(api: Api) -> None:
    for missing in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        status, body = await api.call(
            "POST", f"{BASE}/{missing}/call-records", json_body={"call_records": [record(1)]}
        )
        assert status == 404
        assert_error(body, "not_found")
    created = await api.create(0, allow_dynamic_call_appending=True)
    status, body = await api.call(
        "POST",
        f"{BASE}/{created['uuid']}/call-records",
        json_body={"call_records": [record(1), record(2, language="")], "x": 1},
    )
    assert status == 422
    locs = [d["loc"] for d in body["error"]["details"]]
    assert ["body", "call_records", 1, "language"] in locs and ["body", "x"] in locs


# -- 3. list calls -----------------------------------------------------------------------


async def test_list_calls_pages_in_insertion_order(api: Api) -> None:
    created = await api.create(25)
    uid = created["uuid"]
    seen: list[str] = []
    for page in (1, 2, 3):
        status, body = await api.call(
            "GET", f"{BASE}/{uid}/calls", params={"page": page, "per_page": 10}
        )
        assert status == 200 and body["total"] == 25
        assert (body["page"], body["per_page"]) == (page, 10)
        seen += [c["phone_number"] for c in body["items"]]
    assert seen == [phone(i) for i in range(25)]
    status, body = await api.call("GET", f"{BASE}/{uid}/calls", params={"page": 4, "per_page": 10})
    assert status == 200 and body["items"] == []
    status, body = await api.call("GET", f"{BASE}/{uid}/calls")
    assert body["per_page"] == 20 and len(body["items"]) == 20
    item = body["items"][0]
    assert set(item) >= {
        "uuid",
        "campaign_uuid",
        "phone_number",
        "language",
        "gender_voice",
        "agent_name",
        "variables",
        "status",
        "attempts",
        "max_attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
        "result",
        "attempt_history",
    }
    assert item["campaign_uuid"] == uid and item["attempts"] == 0 and item["result"] is None
    assert item["next_attempt_at"].endswith("Z") and item["variables"] == {"i": 0}


async def test_list_calls_404_and_422(api: Api) -> None:
    status, body = await api.call("GET", f"{BASE}/00000000-0000-4000-8000-000000000000/calls")
    assert status == 404
    created = await api.create(1)
    for params in ({"per_page": "101"}, {"page": "0"}, {"page": "one"}, {"size": "5"}):
        status, body = await api.call("GET", f"{BASE}/{created['uuid']}/calls", params=params)
        assert status == 422, params
        assert body["error"]["details"][0]["loc"][0] == "query"


# -- 4. delete a call --------------------------------------------------------------------


async def test_delete_pending_call(api: Api) -> None:
    created = await api.create(3)
    uid = created["uuid"]
    calls = await api.calls(uid)
    target = calls[1]["_id"]
    status, body = await api.call("DELETE", f"{BASE}/{uid}/calls/{target}")
    assert (status, body) == (200, {"deleted": target})
    assert [c["_id"] for c in await api.calls(uid)] == [calls[0]["_id"], calls[2]["_id"]]
    status, listed = await api.call("GET", f"{BASE}/{uid}/calls")
    assert target not in [c["uuid"] for c in listed["items"]] and listed["total"] == 2
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == 2 and campaign["stats"]["PENDING"] == 2
    [event] = await api.events.wait_for("call.deleted", uid)
    assert event.data["call_uuid"] == target
    status, body = await api.call("DELETE", f"{BASE}/{uid}/calls/{target}")
    assert status == 404
    assert_error(body, "not_found")


async def test_delete_in_progress_call_cancels_its_retries(api: Api) -> None:
    created = await api.create(2, retry=3)
    uid = created["uuid"]
    target = (await api.calls(uid))[0]["_id"]
    assert await api.claim(uid, [target]) == [target]
    status, body = await api.call("DELETE", f"{BASE}/{uid}/calls/{target}")
    assert status == 409
    assert_error(body, "conflict")
    assert "retries are cancelled" in body["error"]["message"]
    [call] = [c for c in await api.calls(uid) if c["_id"] == target]
    assert call["status"] == "IN_PROGRESS" and call["cancel_requested"] is True
    [event] = await api.events.wait_for("call.retries_cancelled", uid)
    assert event.data["call_uuid"] == target
    status, _ = await api.call("DELETE", f"{BASE}/{uid}/calls/{target}")
    assert status == 409


async def test_delete_finished_call_409_changes_nothing(api: Api) -> None:
    created = await api.create(1)
    uid = created["uuid"]
    target = (await api.calls(uid))[0]["_id"]
    assert await api.claim(uid, [target]) == [target]
    assert await api.finish(target, "NO_ANSWER") == "NO_ANSWER"
    before = await api.snapshot()
    status, body = await api.call("DELETE", f"{BASE}/{uid}/calls/{target}")
    assert status == 409 and "NO_ANSWER" in body["error"]["message"]
    assert await api.snapshot() == before


async def test_delete_call_404(api: Api) -> None:
    created = await api.create(1)
    for call in ("00000000-0000-4000-8000-000000000000", "nope"):
        status, _ = await api.call("DELETE", f"{BASE}/{created['uuid']}/calls/{call}")
        assert status == 404
    other = await api.create(1)
    foreign = (await api.calls(other["uuid"]))[0]["_id"]
    status, _ = await api.call("DELETE", f"{BASE}/{created['uuid']}/calls/{foreign}")
    assert status == 404
    status, _ = await api.call("DELETE", f"{BASE}/00000000-0000-4000-8000-000000000000/calls/x")
    assert status == 404


# -- 5. delete by phone number -----------------------------------------------------------


async def test_delete_by_phone_removes_pending_calls_and_keeps_history(api: Api) -> None:
    created = await api.create(0, allow_dynamic_call_appending=True)
    uid = created["uuid"]
    status, body = await api.call(
        "POST",
        f"{BASE}/{uid}/call-records",
        json_body={"call_records": [record(1), record(2), record(1), record(1)]},
    )
    assert status == 200
    first, _, second, third = body["call_uuids"]
    assert await api.claim(uid, [first]) == [first]
    assert await api.finish(first) == "COMPLETED"
    status, body = await api.call("DELETE", f"{BASE}/{uid}/phone-numbers/+7 (701) 000-00-01")
    assert (status, body) == (200, {"deleted": [second, third]})
    left = await api.calls(uid)
    assert [c["_id"] for c in left if c["phone_number"] == phone(1)] == [first]
    campaign = await api.campaign(uid)
    assert campaign["stats"]["total"] == 2 and campaign["stats"]["PENDING"] == 1
    assert campaign["stats"]["COMPLETED"] == 1
    assert len(await api.events.wait_for("call.deleted", uid, count=2)) == 2


async def test_delete_by_phone_409_deletes_nothing(api: Api) -> None:
    created = await api.create(0, allow_dynamic_call_appending=True)
    uid = created["uuid"]
    _, body = await api.call(
        "POST", f"{BASE}/{uid}/call-records", json_body={"call_records": [record(1), record(1)]}
    )
    assert await api.claim(uid, [body["call_uuids"][1]]) == [body["call_uuids"][1]]
    before = await api.snapshot()
    status, answer = await api.call("DELETE", f"{BASE}/{uid}/phone-numbers/{phone(1)}")
    assert status == 409 and "nothing was deleted" in answer["error"]["message"]
    assert await api.snapshot() == before


async def test_delete_by_phone_404_and_422(api: Api) -> None:
    created = await api.create(1)
    status, body = await api.call("DELETE", f"{BASE}/{created['uuid']}/phone-numbers/{phone(7)}")
    assert status == 404
    assert_error(body, "not_found")
    status, body = await api.call("DELETE", f"{BASE}/{created['uuid']}/phone-numbers/12ab")
    assert status == 422 and body["error"]["details"][0]["loc"] == ["path", "phone_number"]


async def test_delete_by_phone_on_an_unknown_campaign_is_404(api: Api) -> None:
    await api.create(2)  # the number exists, in another campaign
    before = await api.snapshot()
    for uid in ("00000000-0000-4000-8000-000000000000", "12345"):
        status, body = await api.call("DELETE", f"{BASE}/{uid}/phone-numbers/{phone(1)}")
        assert status == 404, uid
        assert_error(body, "not_found")
        assert "campaign" in body["error"]["message"], body
    assert await api.snapshot() == before


# -- 6. details --------------------------------------------------------------------------


async def test_details_with_stats_and_and_combined_filters(api: Api) -> None:
    created = await api.create(0, allow_dynamic_call_appending=True)
    uid = created["uuid"]
    _, body = await api.call(
        "POST",
        f"{BASE}/{uid}/call-records",
        json_body={"call_records": [record(1), record(2), record(1), record(3)]},
    )
    c1, c2, c3, c4 = body["call_uuids"]
    assert await api.claim(uid, [c1, c2]) == [c1, c2]
    status, details = await api.call("GET", f"{BASE}/{uid}")
    assert status == 200
    assert details["campaign"]["uuid"] == uid
    assert details["campaign"]["stats"]["total"] == 4
    assert details["campaign"]["stats"]["IN_PROGRESS"] == 2
    assert details["campaign"]["stats"]["PENDING"] == 2
    assert [c["uuid"] for c in details["calls"]["items"]] == [c1, c2, c3, c4]

    async def ids(**params: str) -> list[str]:
        status, answer = await api.call("GET", f"{BASE}/{uid}", params=params)
        assert status == 200, answer
        if "page" not in params:
            assert answer["calls"]["total"] == len(answer["calls"]["items"])
        return [c["uuid"] for c in answer["calls"]["items"]]

    today = datetime.now(UTC).date().isoformat()
    assert await ids(status="IN_PROGRESS") == [c1, c2]
    assert await ids(phone_number="77010000001") == [c1, c3]
    assert await ids(phone_number=phone(1), status="PENDING") == [c3]
    assert await ids(call_uuid=c4) == [c4]
    assert await ids(call_uuid=c4, status="IN_PROGRESS") == []
    assert await ids(date=today) == [c1, c2, c3, c4]
    assert await ids(date=f"{today}T12:00:00Z", status="PENDING") == [c3, c4]
    assert await ids(date="2001-01-01") == []
    assert await ids(status="PENDING", per_page="1", page="2") == [c4]


async def test_details_404_and_422(api: Api) -> None:
    status, _ = await api.call("GET", f"{BASE}/00000000-0000-4000-8000-000000000000")
    assert status == 404
    status, _ = await api.call("GET", f"{BASE}/12345")
    assert status == 404
    created = await api.create(1)
    for params in (
        {"status": "DONE"},
        {"phone_number": "abc"},
        {"call_uuid": "x"},
        {"date": "soon"},
        {"per_page": "1000"},
    ):
        status, body = await api.call("GET", f"{BASE}/{created['uuid']}", params=params)
        assert status == 422, params
        assert_error(body, "validation_failed")
        assert body["error"]["details"][0]["loc"] == ["query", next(iter(params))]
