"""A 100,000-record create in one request, and deep pages served by bounded index reads."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from shared.storage.mongo import Database, Document
from tests.conftest import Servers
from tests.integration.test_api_support import Api, iso, phone, running_api

BASE = "/api/v1/call-campaign"
N = 100_000


class Queries(CommandListener):
    """Records every read command the API sends to the server."""

    def __init__(self) -> None:
        self.commands: list[Document] = []

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "count"):
            self.commands.append(dict(event.command))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def watched(
    servers: Servers, mongo_db: Database, amqp_prefix: str
) -> AsyncIterator[tuple[Api, Queries]]:
    queries = Queries()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        servers.mongodb_url, tz_aware=True, tzinfo=UTC, event_listeners=[queries]
    )
    try:
        async with running_api(servers, client[mongo_db.name], amqp_prefix) as api:
            yield api, queries
    finally:
        await client.close()


async def examined(db: Database, command: Document) -> tuple[int, int]:
    """(documents, keys) the server examines for ``command``, from its query plan."""
    fields = ("filter", "sort", "skip", "limit", "hint", "projection")
    find = {"find": command["find"], **{k: command[k] for k in fields if k in command}}
    plan = await db.command("explain", find, verbosity="executionStats")
    stats = plan["executionStats"]
    return int(stats["totalDocsExamined"]), int(stats["totalKeysExamined"])


async def page(
    api: Api, uid: str, queries: Queries, number: int, per_page: int = 100, path: str = "/calls"
) -> tuple[Any, list[Document]]:
    queries.commands.clear()
    status, body = await api.call(
        "GET", f"{BASE}/{uid}{path}", params={"page": number, "per_page": per_page}
    )
    assert status == 200, body
    return body, [c for c in queries.commands if c.get("find") in ("calls", "call_pages")]


async def test_100k_create_and_deep_pages_read_bounded_ranges(
    watched: tuple[Api, Queries],
) -> None:
    api, queries = watched
    now = datetime.now(UTC)
    body = {
        "call_campaign_name": "big",
        "start_at": iso(now + timedelta(days=1)),
        "end_at": iso(now + timedelta(days=1, hours=8)),
        "speed": 10,
        "call_records": [
            {
                "phone_number": phone(i),
                "language": "RU",
                "gender_voice": "male",
                "agent_name": "a",
                "variables": {"i": i},
            }
            for i in range(N)
        ],
    }
    raw = json.dumps(body).encode()
    started = time.perf_counter()
    status, created = await api.call(
        "POST", BASE, data=io.BytesIO(raw), headers={"content-type": "application/json"}
    )
    elapsed = time.perf_counter() - started
    assert status == 201, created
    assert created["call_records_added"] == N and created["stats"]["total"] == N
    print(f"100k create: {len(raw) / 1e6:.1f} MB in {elapsed:.1f}s")
    uid = created["uuid"]
    assert await api.db["call_pages"].count_documents({"campaign_uuid": uid}) == N // 1000

    # A page near the end: one read of the block counts, one exact seq range.
    answer, reads = await page(api, uid, queries, 999)
    assert answer["total"] == N
    assert [c["phone_number"] for c in answer["items"]] == [phone(i) for i in range(99_800, 99_900)]
    assert [c["find"] for c in reads] == ["call_pages", "calls"]
    docs, keys = await examined(api.db, reads[1])
    assert docs <= 100 and keys <= 101, (docs, keys)
    docs, _ = await examined(api.db, reads[0])
    assert docs <= N // 1000

    # The details endpoint without filters reads the same way.
    answer, reads = await page(api, uid, queries, 1000, path="")
    assert answer["calls"]["items"][-1]["phone_number"] == phone(N - 1)
    assert answer["campaign"]["stats"]["PENDING"] == N
    docs, _ = await examined(api.db, next(c for c in reads if c["find"] == "calls"))
    assert docs <= 100

    # After deletes a block is no longer dense: the read skips inside one block at most.
    answer, _ = await page(api, uid, queries, 999)
    for victim in [c["uuid"] for c in answer["items"][:3]]:
        status, _ = await api.call("DELETE", f"{BASE}/{uid}/calls/{victim}")
        assert status == 200
    answer, reads = await page(api, uid, queries, 999)
    assert answer["total"] == N - 3
    assert answer["items"][0]["phone_number"] == phone(99_803)
    assert answer["items"][-1]["phone_number"] == phone(99_902)
    docs, _ = await examined(api.db, reads[1])
    assert docs <= 1000 + 100
    answer, _ = await page(api, uid, queries, 1000)
    assert len(answer["items"]) == 97 and answer["items"][-1]["phone_number"] == phone(N - 1)
