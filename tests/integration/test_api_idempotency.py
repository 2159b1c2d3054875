"""Idempotency-Key on create and append: retries answer the first answer, work done once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.api.idempotency import request_fingerprint
from shared.domain.models import CreateCampaignRequest
from shared.storage.idempotency import COLLECTION, Claimed, IdempotencyStore, Replay
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_errors import assert_shape
from tests.integration.test_api_support import FIRM_A, Api, iso, record, running_api

BASE = "/api/v1/call-campaign"
KEY = "Idempotency-Key"
TTL = 3600.0


class ManualClock:
    """Wall time that moves only when the test says so."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(mongo_db: Database, clock: ManualClock) -> IdempotencyStore:
    return IdempotencyStore(mongo_db, TTL, lock_seconds=60, now=clock)


@pytest.fixture
async def api(
    servers: Servers, mongo_db: Database, amqp_prefix: str, store: IdempotencyStore
) -> AsyncIterator[Api]:
    async with running_api(servers, mongo_db, amqp_prefix, idempotency=store) as running:
        yield running


def payload(n: int = 2, name: str = "retry me") -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "call_campaign_name": name,
        "start_at": iso(now - timedelta(hours=1)),
        "end_at": iso(now + timedelta(hours=8)),
        "speed": 5,
        "call_records": [record(i) for i in range(n)],
    }


async def post(
    api: Api, path: str, body: Any, key: str | None, api_key: str = "a"
) -> tuple[int, bytes, dict[str, str]]:
    """One POST; the raw answer (to compare byte for byte) and its headers."""
    headers = {"content-type": "application/json", "x-cybernet-api-key": api.keys[api_key]}
    if key is not None:
        headers[KEY] = key
    data = body if isinstance(body, str) else json.dumps(body)
    async with api.client.post(path, data=data, headers=headers) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def campaigns_of(api: Api, firm: str = FIRM_A) -> int:
    return await api.db["campaigns"].count_documents({"firm_id": firm})


async def test_a_retried_create_answers_the_first_answer_and_creates_once(api: Api) -> None:
    body = payload()
    first = await post(api, BASE, body, "create-1")
    assert first[0] == 201 and "Idempotent-Replayed" not in first[2]
    again = await post(api, BASE, body, "create-1")
    assert again[0] == 201
    assert again[1] == first[1]  # byte-equal JSON
    assert again[2]["Idempotent-Replayed"] == "true"
    assert await campaigns_of(api) == 1
    assert await api.db["calls"].count_documents({}) == 2


async def test_the_canonical_body_is_compared_not_its_spelling(api: Api) -> None:
    body = payload()
    first = await post(api, BASE, body, "spelling")
    # the same request: other key order, other spacing, a default written out
    respelled = json.dumps({**dict(reversed(list(body.items()))), "retry": 0}, indent=3)
    again = await post(api, BASE, respelled, "spelling")
    assert (again[0], again[1]) == (first[0], first[1])
    assert await campaigns_of(api) == 1


async def test_the_same_key_with_another_body_is_422(api: Api) -> None:
    assert (await post(api, BASE, payload(), "reused"))[0] == 201
    status, raw, _ = await post(api, BASE, payload(name="another one"), "reused")
    assert status == 422
    body = json.loads(raw)
    assert_shape(body)
    assert body["error"]["code"] == "idempotency_key_reused"
    assert "different request" in body["error"]["message"]
    assert body["error"]["details"][0]["loc"] == ["header", KEY]
    assert await campaigns_of(api) == 1


async def test_keys_are_scoped_per_firm(api: Api) -> None:
    body = payload()
    a = await post(api, BASE, body, "shared-key", api_key="a")
    b = await post(api, BASE, body, "shared-key", api_key="b")
    assert a[0] == b[0] == 201
    assert json.loads(a[1])["uuid"] != json.loads(b[1])["uuid"]
    assert "Idempotent-Replayed" not in b[2]


async def test_without_a_key_every_request_runs(api: Api) -> None:
    body = payload()
    assert (await post(api, BASE, body, None))[0] == 201
    assert (await post(api, BASE, body, None))[0] == 201
    assert await campaigns_of(api) == 2


async def test_a_retried_append_adds_the_records_once(api: Api) -> None:
    uid = (await api.create(0, allow_dynamic_call_appending=True))["uuid"]
    other = (await api.create(0, allow_dynamic_call_appending=True))["uuid"]
    path = f"{BASE}/{uid}/call-records"
    body = {"call_records": [record(i) for i in range(3)]}
    first = await post(api, path, body, "append-1")
    assert first[0] == 200
    again = await post(api, path, body, "append-1")
    assert (again[0], again[1]) == (first[0], first[1])
    assert again[2]["Idempotent-Replayed"] == "true"
    assert len(await api.calls(uid)) == 3
    # the same key and body on another campaign is another request
    status, raw, _ = await post(api, f"{BASE}/{other}/call-records", body, "append-1")
    assert status == 422 and json.loads(raw)["error"]["code"] == "idempotency_key_reused"
    assert await api.calls(other) == []
    # and so is a create with the key of an append
    status, _, _ = await post(api, BASE, payload(), "append-1")
    assert status == 422


async def test_an_answer_from_the_operation_is_kept_even_an_error(api: Api) -> None:
    # 404 comes from running the operation (the campaign does not exist): kept, replayed
    path = f"{BASE}/00000000-0000-4000-8000-000000000000/call-records"
    body = {"call_records": [record(1)]}
    first = await post(api, path, body, "missing")
    assert first[0] == 404
    again = await post(api, path, body, "missing")
    assert (again[0], again[1]) == (first[0], first[1])
    assert again[2]["Idempotent-Replayed"] == "true"


async def test_an_invalid_request_does_not_use_up_its_key(api: Api) -> None:
    bad = {**payload(), "speed": 0}
    status, raw, _ = await post(api, BASE, bad, "fix-and-retry")
    assert status == 422 and json.loads(raw)["error"]["code"] == "validation_failed"
    # the client fixes the body and retries with the same key: it runs
    status, _, headers = await post(api, BASE, payload(), "fix-and-retry")
    assert status == 201 and "Idempotent-Replayed" not in headers
    # a firm's speed limit (checked by the service) is bad input too: not kept
    too_fast = {**payload(), "speed": 10_000}
    assert (await post(api, BASE, too_fast, "too-fast"))[0] == 422
    assert (await post(api, BASE, payload(), "too-fast"))[0] == 201


async def test_a_key_expires_after_its_ttl_even_if_the_ttl_monitor_is_slow(
    api: Api, clock: ManualClock
) -> None:
    assert (await post(api, BASE, payload(), "expiring"))[0] == 201
    clock.advance(TTL - 1)
    assert (await post(api, BASE, payload(name="not yet"), "expiring"))[0] == 422
    clock.advance(2)
    # expired: the document is still there (no TTL pass yet) but counts as absent
    assert await api.db[COLLECTION].count_documents({}) == 1
    status, _, headers = await post(api, BASE, payload(name="a new request"), "expiring")
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert await campaigns_of(api) == 2


async def test_the_ttl_index_removes_expired_keys(api: Api) -> None:
    indexes = await api.db[COLLECTION].index_information()
    ttl = [ix for ix in indexes.values() if "expireAfterSeconds" in ix]
    assert ttl == [{"v": 2, "key": [("expires_at", 1)], "expireAfterSeconds": 0}]
    await post(api, BASE, payload(), "stored")
    doc = await api.db[COLLECTION].find_one({"_id": {"firm_id": FIRM_A, "key": "stored"}})
    assert doc is not None and doc["state"] == "done" and doc["status"] == 201
    assert doc["expires_at"] - doc["created_at"] == timedelta(seconds=TTL)


def _create_fingerprint(body: dict[str, Any]) -> str:
    return request_fingerprint(
        "createCampaign", {}, CreateCampaignRequest.model_validate_json(json.dumps(body))
    )


async def test_a_duplicate_while_the_first_runs_is_409_then_abandoned_claims_lapse(
    api: Api, store: IdempotencyStore, clock: ManualClock
) -> None:
    body = payload()
    # another API process holds the key: its request is still running
    held = await store.begin(FIRM_A, "busy", _create_fingerprint(body))
    assert isinstance(held, Claimed)
    status, raw, headers = await post(api, BASE, body, "busy")
    assert status == 409 and headers["Retry-After"] == "1"
    error = json.loads(raw)
    assert_shape(error)
    assert error["error"]["code"] == "idempotency_key_in_use"
    assert "still in progress" in error["error"]["message"]
    assert await campaigns_of(api) == 0
    # that process died: once its lock lapses, the retry runs
    clock.advance(61)
    status, raw, _ = await post(api, BASE, body, "busy")
    assert status == 201
    # the dead process's late write cannot overwrite the new owner's answer
    await store.complete(held, 500, b"{}")
    replay = await store.begin(FIRM_A, "busy", _create_fingerprint(body))
    assert replay == Replay(201, raw)


async def test_concurrent_duplicates_create_one_campaign(api: Api) -> None:
    body = payload(n=300)
    answers = await asyncio.gather(*(post(api, BASE, body, "racing") for _ in range(6)))
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {201, 409} and statuses[0] == 201
    assert len({raw for status, raw, _ in answers if status == 201}) == 1
    assert await campaigns_of(api) == 1
    assert await api.db["calls"].count_documents({}) == 300


async def test_release_frees_the_key(store: IdempotencyStore) -> None:
    claim = await store.begin(FIRM_A, "released", "fp")
    assert isinstance(claim, Claimed)
    await store.release(claim)
    assert isinstance(await store.begin(FIRM_A, "released", "other fp"), Claimed)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("x" * 256, "too long"),
        ("has space", "a space"),
        ("tab\there", "a control character"),
        ("clé", "not ASCII"),
    ],
)
async def test_a_malformed_key_is_422(api: Api, value: str, why: str) -> None:
    headers = {KEY: value, "content-type": "application/json"}
    headers["x-cybernet-api-key"] = api.keys["a"]
    async with api.client.post(BASE, data=json.dumps(payload()), headers=headers) as resp:
        status, body = resp.status, await resp.json()
    assert status == 422, why
    assert_shape(body)
    assert body["error"]["details"][0]["loc"] == ["header", KEY]
    assert await campaigns_of(api) == 0


async def test_a_key_sent_twice_is_422(api: Api) -> None:
    from multidict import CIMultiDict

    headers = CIMultiDict([(KEY, "one"), (KEY, "two"), ("content-type", "application/json")])
    headers["x-cybernet-api-key"] = api.keys["a"]
    async with api.client.post(BASE, data=json.dumps(payload()), headers=headers) as resp:
        assert resp.status == 422
        assert "once" in (await resp.json())["error"]["details"][0]["msg"]
    assert (await post(api, BASE, payload(), "x" * 255))[0] == 201  # the longest key is fine
