"""Campaign documents: creation, reads, the append reservation and ``stats`` counters.

See ``docs/DATA_MODEL.md``. The campaign document is the commit point of a create
(inserted after its calls); ``next_seq`` hands out call sequence numbers by ``$inc``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.domain.status import CallStatus, CampaignStatus
from shared.storage.mongo import Database, Document


def empty_stats() -> dict[str, int]:
    """``{"total": 0, "PENDING": 0, ...}``: one counter per call status, all present."""
    return {"total": 0, **{status.value: 0 for status in CallStatus}}


class CampaignRepository:
    """Reads and conditional writes of ``campaigns`` (and the firm limits in ``firms``)."""

    def __init__(self, db: Database) -> None:
        self.col = db["campaigns"]
        self.firms = db["firms"]

    async def firm_max_speed(self, firm_id: str) -> int | None:
        """The firm's own concurrency limit, or ``None`` when it has no firm document."""
        doc = await self.firms.find_one({"_id": firm_id}, {"max_speed": 1})
        if doc is None or doc.get("max_speed") is None:
            return None
        return int(doc["max_speed"])

    async def get(self, campaign_uuid: str) -> Document | None:
        """The campaign document without the engine's lease fields, or ``None``."""
        return await self.col.find_one({"_id": campaign_uuid}, {"lease_owner": 0, "lease_until": 0})

    async def insert(self, doc: Document, session: AsyncClientSession | None = None) -> None:
        """Insert a new campaign: the commit point of a create."""
        await self.col.insert_one(doc, session=session)

    async def reserve_append(
        self,
        campaign_uuid: str,
        *,
        expected_status: CampaignStatus,
        allowed: Collection[CampaignStatus],
        new_status: CampaignStatus,
        count: int,
        now: datetime,
    ) -> Document | None:
        """Reserve ``count`` sequence numbers for an append; ``None`` if the status moved.

        The status is in the filter, so an append cannot slip in after the engine
        completed or a operator canceled the campaign. ``stats.total`` and
        ``stats.PENDING`` grow in the same write, before the calls exist, so that the
        engine never sees an empty queue and completes the campaign meanwhile; the
        caller corrects them by the number of calls the server dropped as duplicates.
        Returns the document *before* the update: its ``next_seq`` is the first reserved.
        """
        if expected_status not in allowed:
            return None
        update: dict[str, Any] = {
            "$inc": {"next_seq": count, "stats.total": count, "stats.PENDING": count},
            "$set": {"status": new_status.value, "updated_at": now},
        }
        return await self.col.find_one_and_update(
            {"_id": campaign_uuid, "status": expected_status.value},
            update,
            projection={"next_seq": 1, "status": 1},
            return_document=ReturnDocument.BEFORE,
        )

    async def inc_stats(
        self,
        campaign_uuid: str,
        delta: Mapping[str, int],
        now: datetime | None = None,
        session: AsyncClientSession | None = None,
    ) -> None:
        """Move ``stats`` counters by ``delta`` (for example ``{"PENDING": -1, "total": -1}``)."""
        inc = {f"stats.{key}": value for key, value in delta.items() if value}
        if not inc:
            return
        update: dict[str, Any] = {"$inc": inc}
        if now is not None:
            update["$set"] = {"updated_at": now}
        await self.col.update_one({"_id": campaign_uuid}, update, session=session)
