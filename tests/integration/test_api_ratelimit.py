"""Per-API-key rate limit: bursts, then 429 with Retry-After; other keys unaffected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.api.ratelimit import RateLimiter
from shared.storage.mongo import Database
from tests.conftest import Servers
from tests.integration.test_api_errors import assert_shape
from tests.integration.test_api_support import Api, running_api

BASE = "/api/v1/call-campaign"
MISSING = f"{BASE}/00000000-0000-4000-8000-000000000000"


class Ticks:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
async def api(
    servers: Servers, mongo_db: Database, amqp_prefix: str, ticks: Ticks
) -> AsyncIterator[Api]:
    limiter = RateLimiter(per_second=2, burst=3, monotonic=ticks)
    async with running_api(servers, mongo_db, amqp_prefix, rate_limiter=limiter) as running:
        yield running


async def get(api: Api, key: str | None = "a", path: str = MISSING) -> tuple[int, dict[str, str]]:
    headers = {} if key is None else {"x-cybernet-api-key": api.keys.get(key, key)}
    async with api.client.get(path, headers=headers) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def test_a_burst_then_429_with_retry_after(api: Api, ticks: Ticks) -> None:
    assert [(await get(api))[0] for _ in range(3)] == [404, 404, 404]  # the burst
    status, body = await api.call("GET", MISSING)
    assert status == 429
    assert_shape(body)
    assert body["error"]["code"] == "rate_limited"
    assert "2 per second" in body["error"]["message"]
    status, headers = await get(api)
    assert status == 429 and headers["Retry-After"] == "1"
    # the other firm's key has its own bucket
    assert (await get(api, "b"))[0] == 404
    # half a second later one token is back (2 per second)
    ticks.now += 0.5
    assert (await get(api))[0] == 404
    assert (await get(api))[0] == 429
    # idle long enough, the whole burst is back
    ticks.now += 10
    assert [(await get(api))[0] for _ in range(4)] == [404, 404, 404, 429]


async def test_unauthenticated_requests_and_health_are_not_counted(api: Api) -> None:
    for _ in range(10):
        assert (await get(api, None))[0] == 401
        assert (await get(api, "unknown"))[0] == 401
        assert (await get(api, None, "/health"))[0] == 200
    assert [(await get(api))[0] for _ in range(4)] == [404, 404, 404, 429]


async def test_a_429_does_not_read_or_store_anything(api: Api) -> None:
    for _ in range(3):
        await get(api)
    status, body = await api.call(
        "POST", BASE, json_body={"call_campaign_name": "x"}, headers={"Idempotency-Key": "k"}
    )
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert await api.db["idempotency_keys"].count_documents({}) == 0
    assert await api.db["campaigns"].count_documents({}) == 0


async def test_concurrent_requests_beyond_the_burst_are_refused(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> None:
    # real time: 20 at once against a burst of 10 and 1 per second
    limiter = RateLimiter(per_second=1, burst=10)
    async with running_api(servers, mongo_db, amqp_prefix, rate_limiter=limiter) as api:
        statuses = [s for s, _ in await asyncio.gather(*(get(api) for _ in range(20)))]
    assert 10 <= statuses.count(404) <= 11 and statuses.count(429) == 20 - statuses.count(404)


def test_retry_after_is_whole_seconds_until_a_token() -> None:
    ticks = Ticks()
    limiter = RateLimiter(per_second=0.1, burst=1, monotonic=ticks)
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") == 10
    ticks.now += 9.5
    assert limiter.acquire("k") == 1  # half a second left: still at least 1


def test_idle_buckets_are_evicted() -> None:
    ticks = Ticks()
    limiter = RateLimiter(per_second=10, burst=20, monotonic=ticks)  # full again after 2 s
    for i in range(10_000):
        limiter.acquire(f"key-{i}")
        ticks.now += 0.001
    assert len(limiter) <= 2001  # only the keys seen in the last 2 s
    ticks.now += 2
    limiter.acquire("last")
    assert len(limiter) == 1


def test_zero_disables_the_limit() -> None:
    limiter = RateLimiter(per_second=0, burst=1)
    assert all(limiter.acquire("k") == 0 for _ in range(1000))
    assert len(limiter) == 0


async def test_the_openapi_document_describes_429_and_idempotency_keys(api: Api) -> None:
    status, spec = await api.call("GET", "/api/v1/openapi.json", key=None)
    assert status == 200
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            protected = "security" in op
            assert ("429" in op["responses"]) == protected, (method, path)
            if protected:
                assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
            assert ("Idempotency-Key" in names) == (method == "post"), (method, path)
