"""How a campaign runner finds first attempts: bounded ``seq`` ranges from the first
PENDING call, and again from an append's range when its calls land after the scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.scheduler.runner import CampaignRunner
from shared.clock import ScaledClock
from shared.config import SchedulerSettings
from shared.messaging.outbox import Outbox
from shared.storage.engine import EngineStore
from shared.storage.mongo import Database, Document
from tests.support.seed import seed_campaign

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
START = NOW - timedelta(minutes=30)


class ReadsRecorded(EngineStore):
    """The real store, noting the ``seq`` ranges read for first attempts."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.ranges: list[tuple[int, int]] = []

    async def first_attempts(self, campaign_uuid: str, from_seq: int, to_seq: int) -> list[Any]:
        self.ranges.append((from_seq, to_seq))
        return await super().first_attempts(campaign_uuid, from_seq, to_seq)


class NoSender:
    async def send(self, entries: Any) -> None:
        raise AssertionError("nothing is published here")


def runner_for(db: Database, campaign_uuid: str) -> tuple[CampaignRunner, ReadsRecorded]:
    store = ReadsRecorded(db)
    clock = ScaledClock(1.0, NOW, NOW)  # campaign time starts at NOW
    runner = CampaignRunner(
        campaign_uuid, store, Outbox(db, NoSender()), clock, SchedulerSettings(), settle=None
    )
    return runner, store


async def campaign_doc(db: Database, campaign_uuid: str) -> Document:
    doc = await db["campaigns"].find_one({"_id": campaign_uuid})
    assert doc is not None
    return doc


async def ten_calls(db: Database) -> str:
    """A campaign of ten PENDING first attempts (seqs 0..9) inside its window."""
    return await seed_campaign(
        db,
        phones=[f"+1212555{i:04d}" for i in range(10)],
        start_at=START,
        end_at=START + timedelta(hours=9),
        now=START,
        allow_dynamic_call_appending=True,
    )


async def store_late_calls(db: Database, campaign_uuid: str) -> None:
    """Store ten PENDING calls at seqs 10..19 of the campaign, as an append does after
    reserving them."""
    late = await seed_campaign(
        db,
        phones=[f"+1212666{i:04d}" for i in range(10)],
        start_at=START,
        end_at=START + timedelta(hours=9),
        now=START,
    )
    async for call in db["calls"].find({"campaign_uuid": late}):
        await db["calls"].update_one(
            {"_id": call["_id"]},
            {"$set": {"campaign_uuid": campaign_uuid, "seq": 10 + call["seq"]}},
        )


async def test_a_runner_taking_over_starts_at_the_first_pending_call(mongo_db: Database) -> None:
    phones = [f"+1212555{i:04d}" for i in range(2000)]
    uuid = await seed_campaign(
        mongo_db, phones=phones, start_at=START, end_at=START + timedelta(hours=9), now=START
    )
    # The first 1,500 calls are done (a previous owner dialed them).
    await mongo_db["calls"].update_many(
        {"campaign_uuid": uuid, "seq": {"$lt": 1500}},
        {"$set": {"status": "COMPLETED", "attempts": 1, "next_attempt_at": None}},
    )
    runner, store = runner_for(mongo_db, uuid)
    chosen = await runner._candidates(await campaign_doc(mongo_db, uuid), NOW, 5)
    assert [c["seq"] for c in chosen] == [1500, 1501, 1502, 1503, 1504]
    assert store.ranges and store.ranges[0][0] == 1500, store.ranges


async def test_calls_stored_after_the_scan_passed_their_seqs_are_read_again(
    mongo_db: Database,
) -> None:
    uuid = await ten_calls(mongo_db)
    # An append reserved seqs 10..19 (next_seq moved) but has not stored its calls yet.
    await mongo_db["campaigns"].update_one({"_id": uuid}, {"$set": {"next_seq": 20}})
    runner, _ = runner_for(mongo_db, uuid)
    chosen = await runner._candidates(await campaign_doc(mongo_db, uuid), NOW, 50)
    assert [c["seq"] for c in chosen] == list(range(10))
    runner._firsts.clear()  # as if all ten were claimed

    await store_late_calls(mongo_db, uuid)  # the append's calls land now
    doc = await campaign_doc(mongo_db, uuid)
    assert await runner._candidates(doc, NOW, 50) == []  # the scan already passed them
    runner.rewind(10)  # what the campaign.appended event (seq_from 10) does
    chosen = await runner._candidates(doc, NOW, 50)
    assert [c["seq"] for c in chosen] == list(range(10, 20))


async def test_calls_stranded_behind_the_scan_without_an_event_are_found(
    mongo_db: Database,
) -> None:
    """An append that died after storing its calls never published campaign.appended."""
    uuid = await ten_calls(mongo_db)
    await mongo_db["campaigns"].update_one({"_id": uuid}, {"$set": {"next_seq": 20}})
    runner, _ = runner_for(mongo_db, uuid)
    assert len(await runner._candidates(await campaign_doc(mongo_db, uuid), NOW, 50)) == 10
    runner._firsts.clear()  # the ten were claimed and finished
    await mongo_db["calls"].update_many(
        {"campaign_uuid": uuid}, {"$set": {"status": "COMPLETED", "attempts": 1}}
    )
    await store_late_calls(mongo_db, uuid)
    # The counters say 10 PENDING; the runner knows of none and no retry waits.
    await mongo_db["campaigns"].update_one(
        {"_id": uuid}, {"$set": {"stats.PENDING": 10, "stats.COMPLETED": 10}}
    )
    doc = await campaign_doc(mongo_db, uuid)
    assert await runner._candidates(doc, NOW, 50) == []
    await runner._look_for_stranded(doc)
    chosen = await runner._candidates(doc, NOW, 50)
    assert [c["seq"] for c in chosen] == list(range(10, 20))


async def test_waiting_retries_are_not_taken_for_stranded_calls(mongo_db: Database) -> None:
    uuid = await ten_calls(mongo_db)
    later = NOW + timedelta(minutes=30)
    await mongo_db["calls"].update_many(
        {"campaign_uuid": uuid},
        {"$set": {"attempts": 1, "next_attempt_at": later, "retry_at": later}},
    )
    runner, store = runner_for(mongo_db, uuid)
    doc = await campaign_doc(mongo_db, uuid)
    assert await runner._candidates(doc, NOW, 50) == []
    reads = len(store.ranges)
    await runner._look_for_stranded(doc)
    await runner._candidates(doc, NOW, 50)
    assert len(store.ranges) == reads, "no second scan: the 10 PENDING calls wait for retries"
