"""Recovery paths, each provoked on purpose against real processes and servers.

- a dial command delivered twice (redelivery, or published twice by an outbox relay);
- a worker that dies after dialing and before reporting (crash drill, SIM_CRASH_DRILL);
- a scheduler SIGKILLed while it owns campaigns (taken over, no call dialed twice);
- the broker and the database restarting mid-campaign: the short fault-injection run.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import aiohttp
import pytest

from services.stack import free_port
from shared.domain.messages import DIAL, DialCommand
from shared.messaging.envelope import Envelope
from shared.messaging.topology import DIAL_KEY, Names, declare
from shared.storage.mongo import Database
from tests.chaos.broker import available
from tests.chaos.run import Chaos, ChaosConfig
from tests.e2e.conftest import SIM_START
from tests.e2e.test_metrics import scrape, total
from tests.support.analysis import (
    campaign,
    consistency_problems,
    dials,
    duplicate_attempts,
    eventually,
    max_in_progress,
)
from tests.support.processes import Processes
from tests.support.seed import seed_campaign

pytestmark = pytest.mark.e2e


async def test_a_dial_command_delivered_twice_is_dialed_once(
    mongo_db: Database, processes: Processes, service_env: dict[str, str]
) -> None:
    port = free_port()
    processes.start("worker", "worker", METRICS_PORT=str(port))
    await asyncio.to_thread(processes.wait_ready, "worker")
    command = DialCommand(
        call_uuid="6f1c1d8e-0000-4000-8000-000000000001",
        campaign_uuid="6f1c1d8e-0000-4000-8000-0000000000aa",
        seq=0,
        firm_id="acme",
        attempt=1,
        phone_number="+14155550001",
        language="en",
        gender_voice="female",
        agent_name="agent",
    )
    first = Envelope(
        type=DIAL,
        occurred_at=SIM_START,
        firm_id="acme",
        campaign_uuid=command.campaign_uuid,
        data=command.model_dump(mode="json"),
    )
    # The same message twice (a redelivery) and a copy with a new id (a second publish).
    copies = [first, first, first.model_copy(update={"message_id": "another-id"})]
    connection = await aio_pika.connect(service_env["AMQP_URL"])
    async with connection, aiohttp.ClientSession() as session:
        channel = await connection.channel()
        topology = await declare(channel, Names(service_env["AMQP_PREFIX"]))
        for envelope in copies:
            await topology.work.publish(envelope.to_message(), routing_key=DIAL_KEY)

        async def handled() -> float:
            samples = (await scrape(session, port)).get("dialer_dial_commands_total", [])
            return total(samples)

        await eventually(handled, lambda n: n == 3, 60, "three dial commands handled")
        samples = (await scrape(session, port))["dialer_dial_commands_total"]
        assert total(samples, result="dialed") == 1
        assert total(samples, result="duplicate") == 2
    records = [d async for d in mongo_db["sim_dials"].find({"call_uuid": command.call_uuid})]
    assert [(r["attempt"], r["outcome"]) for r in records] == [(1, "ANSWERED")]


async def test_a_worker_dying_after_dialing_is_recovered_and_retried(
    mongo_db: Database, processes: Processes
) -> None:
    start = SIM_START + timedelta(seconds=30)
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=["+14155550007"],  # the crash-drill number
        start_at=start,
        end_at=start + timedelta(hours=9),
        now=SIM_START,
        speed=1,
        retry=1,
        retry_interval=1,
    )
    processes.start("scheduler", "scheduler")
    for name in ("worker-a", "worker-b"):
        processes.start(name, "worker", SIM_CRASH_DRILL="true", ATTEMPT_HEARTBEAT_SECONDS="1")
    doc = await eventually(
        lambda: campaign(mongo_db, campaign_uuid),
        lambda c: c["status"] == "COMPLETED",
        120,
        "campaign COMPLETED after the crash",
    )
    crashed = [n for n in ("worker-a", "worker-b") if processes.procs[n].poll() is not None]
    assert len(crashed) == 1, "exactly one worker died in the drill"
    assert processes.procs[crashed[0]].returncode == 70
    processes.procs.pop(crashed[0])  # it is gone; the others stop cleanly on SIGTERM
    call = await mongo_db["calls"].find_one({"campaign_uuid": campaign_uuid})
    assert call is not None
    history = call["attempt_history"]
    assert [h["attempt"] for h in history] == [1, 2]
    assert history[0]["outcome"] == "FAILED"
    assert "took the call and did not report" in history[0]["provider"]["reason"]
    assert history[1]["outcome"] == "ANSWERED"
    assert call["status"] == "COMPLETED" and doc["stats"]["COMPLETED"] == 1
    records = await dials(mongo_db, campaign_uuid)
    assert sorted(r["attempt"] for r in records) == [1, 2]  # each attempt placed once


async def test_a_worker_killed_mid_call_leaves_its_dial_on_record_and_the_call_is_retried(
    mongo_db: Database, processes: Processes
) -> None:
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=["+14155550001"],  # answers
        start_at=SIM_START + timedelta(seconds=30),
        end_at=SIM_START + timedelta(hours=9),
        now=SIM_START,
        speed=1,
        retry=1,
        retry_interval=1,
    )
    processes.start("scheduler", "scheduler")
    # Rings 10 campaign hours (a minute of wall time): long enough to kill it mid-call.
    processes.start("worker-a", "worker", SIM_RING_SECONDS="36000")
    ringing = await eventually(
        lambda: dials(mongo_db, campaign_uuid), lambda r: len(r) == 1, 60, "the first dial"
    )
    assert ringing[0]["ended_at"] is None and ringing[0]["outcome"] is None
    processes.kill("worker-a")  # SIGKILL during the call
    processes.start("worker-b", "worker")
    doc = await eventually(
        lambda: campaign(mongo_db, campaign_uuid),
        lambda c: c["status"] == "COMPLETED",
        120,
        "the call retried after its lease expired",
    )
    records = sorted(await dials(mongo_db, campaign_uuid), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["outcome"]) for r in records] == [(1, None), (2, "ANSWERED")]
    call = await mongo_db["calls"].find_one({"campaign_uuid": campaign_uuid})
    assert call is not None
    assert [(h["attempt"], h["outcome"]) for h in call["attempt_history"]] == [
        (1, "FAILED"),
        (2, "ANSWERED"),
    ]
    assert doc["stats"]["COMPLETED"] == 1
    assert await consistency_problems(mongo_db, campaign_uuid) == []


async def test_a_call_longer_than_its_attempt_lease_is_not_taken_for_lost(
    mongo_db: Database, processes: Processes
) -> None:
    start = SIM_START + timedelta(seconds=30)
    campaign_uuid = await seed_campaign(
        mongo_db,
        phones=["+14155550001"],  # answers
        start_at=start,
        end_at=start + timedelta(hours=9),
        now=SIM_START,
        speed=1,
        retry=1,
    )
    # Talks two campaign hours; the attempt lease is ten campaign minutes (1 wall s).
    processes.start("scheduler", "scheduler", ATTEMPT_LEASE_SECONDS="600")
    processes.start("worker", "worker", SIM_TALK_SECONDS="7200", ATTEMPT_HEARTBEAT_SECONDS="0.2")
    doc = await eventually(
        lambda: campaign(mongo_db, campaign_uuid),
        lambda c: c["status"] == "COMPLETED",
        120,
        "campaign COMPLETED",
    )
    call = await mongo_db["calls"].find_one({"campaign_uuid": campaign_uuid})
    assert call is not None
    assert [(h["attempt"], h["outcome"]) for h in call["attempt_history"]] == [(1, "ANSWERED")]
    assert call["attempt_history"][0]["duration_seconds"] >= 7200
    assert len(await dials(mongo_db, campaign_uuid)) == 1 and doc["stats"]["COMPLETED"] == 1


async def test_a_scheduler_killed_while_owning_campaigns_is_taken_over(
    mongo_db: Database, processes: Processes
) -> None:
    start = SIM_START + timedelta(seconds=30)
    uuids = [
        await seed_campaign(
            mongo_db,
            phones=[f"+1415556{c}{i:03d}" for i in range(100, 160)],
            start_at=start,
            end_at=start + timedelta(hours=9),
            now=SIM_START,
            speed=3,
        )
        for c in range(2)
    ]
    processes.start("scheduler-a", "scheduler", SESSION_FENCE_SECONDS="3")
    processes.start("worker", "worker")
    for campaign_uuid in uuids:
        await eventually(
            lambda u=campaign_uuid: campaign(mongo_db, u),  # type: ignore[misc]
            lambda c: c["lease_owner"] is not None and c["stats"]["IN_PROGRESS"] > 0,
            60,
            "campaign owned and dialing",
        )
    owner = (await campaign(mongo_db, uuids[0]))["lease_owner"]
    processes.start("scheduler-b", "scheduler", SESSION_FENCE_SECONDS="3")
    await asyncio.to_thread(processes.wait_ready, "scheduler-b")
    processes.kill("scheduler-a")  # SIGKILL, possibly in the middle of a transaction
    killed_at = datetime.now(UTC)
    for campaign_uuid in uuids:
        doc = await eventually(
            lambda u=campaign_uuid: campaign(mongo_db, u),  # type: ignore[misc]
            lambda c: c["status"] == "COMPLETED",
            120,
            "campaign COMPLETED by the surviving scheduler",
        )
        assert doc["lease_owner"] in (None, *[o for o in [doc["lease_owner"]] if o != owner])
        records = await dials(mongo_db, campaign_uuid)
        assert len(records) == 60 and duplicate_attempts(records) == []
        assert max_in_progress([(r["started_at"], r["ended_at"]) for r in records]) <= 3
        assert doc["stats"]["IN_PROGRESS"] == 0 and doc["stats"]["PENDING"] == 0
    assert datetime.now(UTC) > killed_at


@pytest.mark.timeout(900)
async def test_short_fault_injection_run(tmp_path: Path) -> None:
    """`make chaos` in small: one SIGKILL of each kind, one broker and one DB restart."""
    why = available()
    if why is not None and os.environ.get("AMQP_URL"):
        pytest.skip(
            "AMQP_URL is set, so make test did not install Debian's rabbitmq-server, "
            f"which this run needs for a broker it may restart ({why})"
        )
    assert why is None, why
    config = ChaosConfig(
        calls=300, speed=30, kill_every=3, max_kills=2, seed=5, timeout=600, workdir=tmp_path
    )
    lines: list[str] = []
    report = await Chaos(config, lines.append).run()
    assert report.ok, "\n".join(lines + report.lines())
    assert report.facts["broker restarts"] == 1 and report.facts["database restarts"] == 1
    assert report.facts["processes killed (SIGKILL)"] == {"scheduler": 1, "worker": 1}
