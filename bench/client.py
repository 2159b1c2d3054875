"""The benchmarks' HTTP client of the Call Campaigns API, and the records they send."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from shared.storage.mongo import Database

Doc = dict[str, Any]


def phone(i: int) -> str:
    """A valid, distinct E.164 number for each ``i`` below 1,000,000 (New York, 212-2xx)."""
    return f"+1212{200 + i // 10_000:03d}{i % 10_000:04d}"


def records(start: int, count: int) -> list[Doc]:
    """Call records in the documented shape, with a few variables each."""
    return [
        {
            "phone_number": phone(i),
            "language": "EN",
            "gender_voice": "female" if i % 2 else "male",
            "agent_name": "sales_agent_v2",
            "variables": {"client_name": f"Client {i}", "debt_amount": 15000 + i, "row": i},
        }
        for i in range(start, start + count)
    ]


def stored_calls(campaign_uuid: str, recs: list[Doc], now: datetime) -> list[Doc]:
    """The documents a create stores for ``recs`` (docs/DATA_MODEL.md), for baselines."""
    day = now.strftime("%Y-%m-%d")
    return [
        {
            "_id": str(uuid.uuid4()),
            "campaign_uuid": campaign_uuid,
            "seq": i,
            **r,
            "language": r["language"].upper(),
            "status": "PENDING",
            "attempts": 0,
            "max_attempts": 1,
            "next_attempt_at": now,
            "days": [day],
            "cancel_requested": False,
            "result": None,
            "attempt_history": [],
            "created_at": now,
            "updated_at": now,
        }
        for i, r in enumerate(recs)
    ]


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.headers = {"x-cybernet-api-key": key, "content-type": "application/json"}
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        await self.session.close()

    async def _send(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Doc]:
        async with self.session.request(
            method, self.url + path, data=body, headers=self.headers
        ) as r:
            return r.status, await r.json()

    async def create(
        self,
        recs: list[Doc],
        speed: int,
        start: datetime,
        hours: float = 12,
        dynamic: bool = False,
    ) -> tuple[Doc, float]:
        """Create a campaign; returns it and the request's wall seconds (body built before)."""
        body = json.dumps(
            {
                "call_campaign_name": f"bench {len(recs)}",
                "start_at": iso(start),
                "end_at": iso(start + timedelta(hours=hours)),
                "retry": 0,
                "speed": speed,
                "allow_dynamic_call_appending": dynamic,
                "call_records": recs,
            }
        ).encode()
        began = time.perf_counter()
        status, doc = await self._send("POST", "/api/v1/call-campaign", body)
        elapsed = time.perf_counter() - began
        if status != 201:
            raise RuntimeError(f"create answered {status}: {str(doc)[:500]}")
        return doc, elapsed

    async def append(self, campaign_uuid: str, recs: list[Doc]) -> float:
        body = json.dumps({"call_records": recs}).encode()
        began = time.perf_counter()
        status, doc = await self._send(
            "POST", f"/api/v1/call-campaign/{campaign_uuid}/call-records", body
        )
        elapsed = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"append answered {status}: {str(doc)[:500]}")
        return elapsed

    async def get(self, path: str) -> Doc:
        status, doc = await self._send("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {str(doc)[:300]}")
        return doc


async def wait_final(db: Database, campaign_uuid: str, within: float) -> Doc:
    """Poll the campaign document until COMPLETED (or another final status)."""
    deadline = time.monotonic() + within
    while True:
        doc = await db["campaigns"].find_one({"_id": campaign_uuid}, {"status": 1, "stats": 1})
        if doc and doc["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"campaign not final after {within}s: {doc}")
        await asyncio.sleep(0.1)


FINAL = ("COMPLETED", "NO_ANSWER", "BUSY", "FAILED", "CANCELED", "EXPIRED")


def finished(stats: Doc) -> int:
    return sum(int(stats.get(k, 0)) for k in FINAL)
