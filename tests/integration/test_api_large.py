"""A 100,000-record create and a 100,000-record append, each in one request and stored with
bulk writes, and deep pages served by bounded index reads."""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
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

from shared.storage.calls import BLOCK, INSERT_CHUNK
from shared.storage.mongo import Database, Document
from tests.conftest import Servers
from tests.integration.test_api_support import Api, iso, phone, running_api

BASE = "/api/v1/call-campaign"
N = 100_000


#: The write commands and the field of each that holds its documents or statements.
WRITES = {"insert": "documents", "update": "updates", "delete": "deletes"}


@dataclass(frozen=True)
class Write:
    """One write command: its name, collection and how many documents or statements."""

    command: str
    collection: str
    ops: int


class Queries(CommandListener):
    """Records every read and write command the API sends to the server."""

    def __init__(self) -> None:
        self.commands: list[Document] = []
        self.writes: list[Write] = []

    def started(self, event: CommandStartedEvent) -> None:
        name = event.command_name
        if name in ("find", "aggregate", "count"):
            self.commands.append(dict(event.command))
        elif name in WRITES:
            # PyMongo sends a large batch's documents as a separate payload (OP_MSG
            # section), which the event shows merged into the command.
            ops = len(event.command.get(WRITES[name], ()))
            self.writes.append(Write(name, str(event.command[name]), ops))
        elif name == "findAndModify":
            self.writes.append(Write(name, str(event.command[name]), 1))
        elif name == "bulkWrite":  # the client-level bulk write of MongoDB 8
            self.writes.append(Write(name, "*", len(event.command.get("ops", ()))))

    def written(self, collection: str, command: str | None = None) -> list[Write]:
        return [
            w
            for w in self.writes
            if w.collection in (collection, "*") and command in (None, w.command)
        ]

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


#: Write commands besides the calls' inserts, whatever the number of records: the campaign
#: (inserted, or its seq range reserved), one bulk update of the page counts (one statement
#: per block of BLOCK calls), the outbox entry stored and removed.
OTHER_WRITES = 4


def assert_bulk_written(queries: Queries, n: int) -> None:
    """``n`` calls were stored by inserts of INSERT_CHUNK documents, not one by one."""
    inserts = queries.written("calls", "insert")
    assert len(inserts) <= math.ceil(n / INSERT_CHUNK), [w.ops for w in inserts]
    assert sum(w.ops for w in inserts) == n
    assert queries.written("calls") == inserts  # no update or delete of calls
    others = [w for w in queries.writes if w.collection != "calls"]
    assert len(others) <= OTHER_WRITES, others
    print(f"{n} calls in {len(inserts)} inserts; other writes: {others}")


async def examined(db: Database, command: Document) -> tuple[int, int]:
    """(documents, keys) the server examines for ``command``, from its query plan."""
    fields = ("filter", "sort", "skip", "limit", "hint", "projection")
    find = {"find": command["find"], **{k: command[k] for k in fields if k in command}}
    plan = await db.command("explain", find, verbosity="executionStats")
    stats = plan["executionStats"]
    return int(stats["totalDocsExamined"]), int(stats["totalKeysExamined"])


def records(first: int, n: int) -> list[dict[str, Any]]:
    """``n`` call records with the distinct numbers ``phone(first)`` onwards."""
    return [
        {
            "phone_number": phone(i),
            "language": "RU",
            "gender_voice": "male",
            "agent_name": "a",
            "variables": {"i": i},
        }
        for i in range(first, first + n)
    ]


async def page(
    api: Api, uid: str, queries: Queries, number: int, per_page: int = 100, path: str = "/calls"
) -> tuple[Any, list[Document]]:
    queries.commands.clear()
    status, body = await api.call(
        "GET", f"{BASE}/{uid}{path}", params={"page": number, "per_page": per_page}
    )
    assert status == 200, body
    return body, [c for c in queries.commands if c.get("find") in ("calls", "call_pages")]


@pytest.mark.timeout(600)  # two 12 MB requests: about 3 minutes on a loaded development box
async def test_100k_create_and_append_bulk_written_and_deep_pages_read_bounded_ranges(
    watched: tuple[Api, Queries],
) -> None:
    api, queries = watched
    now = datetime.now(UTC)
    body = {
        "call_campaign_name": "big",
        "start_at": iso(now + timedelta(days=1)),
        "end_at": iso(now + timedelta(days=1, hours=8)),
        "speed": 10,
        "call_records": records(0, N),
    }
    raw = json.dumps(body).encode()
    queries.writes.clear()
    started = time.perf_counter()
    status, created = await api.call(
        "POST", BASE, data=io.BytesIO(raw), headers={"content-type": "application/json"}
    )
    elapsed = time.perf_counter() - started
    assert status == 201, created
    assert created["call_records_added"] == N and created["stats"]["total"] == N
    print(f"100k create: {len(raw) / 1e6:.1f} MB in {elapsed:.1f}s")
    assert_bulk_written(queries, N)
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

    # A 100,000-record append in one request: bulk inserts, seqs after the first 100,000.
    more = {"call_records": records(N, N)}
    raw = json.dumps(more).encode()
    queries.writes.clear()
    started = time.perf_counter()
    status, added = await api.call(
        "POST",
        f"{BASE}/{uid}/call-records",
        data=io.BytesIO(raw),
        headers={"content-type": "application/json"},
    )
    elapsed = time.perf_counter() - started
    assert status == 200, added
    print(f"100k append: {len(raw) / 1e6:.1f} MB in {elapsed:.1f}s")
    assert (added["call_records_added"], added["duplicates_removed"]) == (N, 0)
    assert added["status"] == "PENDING" and len(added["call_uuids"]) == N
    assert_bulk_written(queries, N)
    for call_uuid, seq in ((added["call_uuids"][0], N), (added["call_uuids"][-1], 2 * N - 1)):
        doc = await api.db["calls"].find_one({"_id": call_uuid}, {"seq": 1, "phone_number": 1})
        assert doc is not None and (doc["seq"], doc["phone_number"]) == (seq, phone(seq))
    assert await api.db["calls"].count_documents({"campaign_uuid": uid, "seq": {"$gte": N}}) == N
    assert await api.db["call_pages"].count_documents({"campaign_uuid": uid}) == 2 * N // BLOCK

    # Near the end of the appended range (3 deleted above: positions shift by 3).
    answer, reads = await page(api, uid, queries, 1999)
    assert answer["total"] == 2 * N - 3
    expected = [phone(N + j) for j in range(99_803, 99_903)]
    assert [c["phone_number"] for c in answer["items"]] == expected
    assert [c["find"] for c in reads] == ["call_pages", "calls"]
    docs, keys = await examined(api.db, reads[1])
    assert docs <= 100 and keys <= 101, (docs, keys)
    docs, _ = await examined(api.db, reads[0])
    assert docs <= 2 * N // BLOCK
    answer, reads = await page(api, uid, queries, 2000, path="")
    assert answer["calls"]["items"][-1]["phone_number"] == phone(2 * N - 1)
    assert answer["campaign"]["stats"]["PENDING"] == 2 * N - 3
    docs, _ = await examined(api.db, next(c for c in reads if c["find"] == "calls"))
    assert docs <= 100
