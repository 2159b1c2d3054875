"""An append killed after reserving sequence numbers, before storing its calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.storage.engine import EngineStore
from shared.storage.mongo import Database
from tests.support.seed import seed_campaign

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


async def test_counts_without_calls_are_dropped_when_the_window_ends(mongo_db: Database) -> None:
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=["+14155550101", "+14155550102"],
        start_at=START,
        end_at=START + timedelta(hours=8),
        now=START,
    )
    # What the reservation of a 3-record append does before the process dies.
    await mongo_db["campaigns"].update_one(
        {"_id": campaign_uuid},
        {"$inc": {"next_seq": 3, "stats.total": 3, "stats.PENDING": 3}},
    )
    expired = await EngineStore(mongo_db).expire_pending(campaign_uuid, START + timedelta(hours=9))
    assert expired == 2
    doc = await mongo_db["campaigns"].find_one({"_id": campaign_uuid})
    assert doc is not None
    stats = doc["stats"]
    assert (stats["total"], stats["PENDING"], stats["EXPIRED"]) == (2, 0, 2)
    statuses = [d["status"] async for d in mongo_db["calls"].find({"campaign_uuid": campaign_uuid})]
    assert statuses == ["EXPIRED", "EXPIRED"]
