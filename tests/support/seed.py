"""Campaigns written straight into MongoDB per docs/DATA_MODEL.md, for engine tests
that must not depend on the HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.domain.attempts import first_attempt_due
from shared.domain.status import CallStatus
from shared.domain.window import CallingWindow, day_of
from shared.storage.mongo import Database

STATUSES = [status.value for status in CallStatus]


async def seed_campaign(
    db: Database,
    *,
    phones: list[str],
    start_at: datetime,
    end_at: datetime,
    now: datetime,
    speed: int = 5,
    retry: int = 0,
    retry_interval: int = 30,
    transfer_next_day: bool = False,
    allow_dynamic_call_appending: bool = False,
    firm_id: str = "firm-a",
) -> str:
    campaign_uuid = str(uuid.uuid4())
    window = CallingWindow(start_at, end_at, transfer_next_day)
    due = first_attempt_due(now, window)
    calls: list[dict[str, Any]] = [
        {
            "_id": str(uuid.uuid4()),
            "campaign_uuid": campaign_uuid,
            "seq": i,
            "phone_number": phone,
            "language": "EN",
            "gender_voice": "female",
            "agent_name": "agent",
            "variables": {"i": i},
            "status": "PENDING",
            "attempts": 0,
            "max_attempts": 1 + retry,
            "next_attempt_at": due,
            "days": [day_of(due)] if due else [],
            "cancel_requested": False,
            "result": None,
            "attempt_history": [],
            "created_at": now,
            "updated_at": now,
        }
        for i, phone in enumerate(phones)
    ]
    if calls:
        await db["calls"].insert_many(calls)
    stats = dict.fromkeys(STATUSES, 0)
    stats["PENDING"] = len(calls)
    await db["campaigns"].insert_one(
        {
            "_id": campaign_uuid,
            "firm_id": firm_id,
            "call_campaign_name": "seeded",
            "start_at": start_at,
            "end_at": end_at,
            "retry": retry,
            "speed": speed,
            "retry_interval": retry_interval,
            "day_unique": None,
            "transfer_next_day": transfer_next_day,
            "allow_dynamic_call_appending": allow_dynamic_call_appending,
            "status": "PENDING",
            "status_reason": None,
            "created_at": now,
            "updated_at": now,
            "next_seq": len(calls),
            "stats": {"total": len(calls), **stats},
            "lease_owner": None,
            "lease_until": None,
        }
    )
    return campaign_uuid
