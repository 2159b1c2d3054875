"""The fault-injection run: a campaign dialed while processes and servers are killed.

The run starts its own SecantusDB (data on disk) and its own RabbitMQ node, an API,
``schedulers`` schedulers and ``workers`` dialer workers on accelerated time, creates
a campaign through the API, and while it is dialed:

- SIGKILLs a random scheduler or worker every ``kill_every`` wall seconds and starts
  a new one in its place (the first kills are one of each kind);
- restarts RabbitMQ once (at a quarter of the calls) and the database server once (at
  half), both cleanly stopped and started on the same port and data.

Then it stops everything and checks the outcome against the simulated provider's log
of every dial, the calls in the database and the events captured from the events
exchange (a quorum queue bound before anything starts). Each figure is one line;
the run fails if any is wrong.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from services.stack import VAR, EmbeddedMongo, free_port, wait_port
from shared.domain.status import FINAL_CALL_STATUSES
from shared.messaging.topology import Names, declare
from shared.storage.mongo import Database, make_client
from tests.chaos.broker import PrivateRabbit
from tests.support.analysis import duplicate_attempts, instants_above, max_in_progress
from tests.support.processes import Processes

SIM_START = datetime(2026, 3, 2, 8, 59, 0, tzinfo=UTC)
#: Events the run expects to see: bound on the capture queue.
CAPTURED = ("campaign.#", "call.finished.*")


@dataclass(frozen=True)
class ChaosConfig:
    calls: int = 5000
    schedulers: int = 2
    workers: int = 3
    speed: int = 100
    retry: int = 2
    #: Campaign seconds per wall second.
    rate: float = 120.0
    #: Wall seconds between process kills (0: no kills).
    kill_every: float = 4.0
    #: Kill at most this many processes (None: until the campaign completes).
    max_kills: int | None = None
    restart_broker: bool = True
    restart_database: bool = True
    seed: int = 1
    #: Wall seconds the campaign may take before the run gives up.
    timeout: float = 900.0
    workdir: Path | None = None


@dataclass
class Figure:
    name: str
    value: int
    ok: bool
    note: str = ""

    def line(self) -> str:
        verdict = "ok" if self.ok else "WRONG"
        return f"{self.name}: {self.value}{f' ({self.note})' if self.note else ''} [{verdict}]"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.figures)

    def lines(self) -> list[str]:
        out = [f.line() for f in self.figures]
        out += [f"{k}: {v}" for k, v in self.facts.items()]
        return out


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _phones(n: int) -> list[str]:
    # Kazakh mobile numbers (+7 701 ...): valid E.164, none of them a magic number.
    return [f"+7701{1_000_000 + i * 7:07d}" for i in range(n)]


class Chaos:
    def __init__(self, config: ChaosConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.rng = random.Random(config.seed)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.workdir = config.workdir or VAR / "chaos" / f"{stamp}-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.names = Names(f"chaos-{uuid.uuid4().hex[:8]}")
        self.rabbit = PrivateRabbit(self.workdir / "rabbitmq")
        self.db_log = open(self.workdir / "db.log", "ab")  # noqa: SIM115 - closed in close()
        self.mongo = EmbeddedMongo(free_port(), str(self.workdir / "db"), self.db_log)
        self.slots: dict[str, str] = {}  # slot ("scheduler-1") -> current process name
        self.incarnations: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.db_restarts = 0
        self.procs: Processes | None = None

    # -- processes --------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        return {
            "AMQP_URL": self.rabbit.url,
            "MONGODB_URL": self.mongo.url,
            "MONGODB_DB": "chaos",
            "AMQP_PREFIX": self.names.prefix,
            "CLOCK_RATE": str(self.config.rate),
            "CLOCK_ORIGIN": datetime.now(UTC).isoformat(),
            "CLOCK_SIM_ORIGIN": SIM_START.isoformat(),
            "SIM_RING_SECONDS": "8",
            "SIM_TALK_SECONDS": "60",
            "SIM_SEED": str(self.config.seed),
            "LEASE_SECONDS": "3",
            "SCHEDULER_TICK_SECONDS": "0.5",
            # 15 wall seconds at the default rate: a killed worker's calls come back then.
            "ATTEMPT_LEASE_SECONDS": str(15 * self.config.rate),
            "OUTBOX_GRACE_SECONDS": "2",
            "SESSION_FENCE_SECONDS": "3",
            "OUTBOX_RELAY_SECONDS": "0.5",
            "DRAIN_SECONDS": "15",
            "RATE_LIMIT_PER_SECOND": "0",
            "LOG_JSON": "true",
        }

    def _start(self, slot: str) -> None:
        assert self.procs is not None
        self.incarnations[slot] += 1
        name = f"{slot}.{self.incarnations[slot]}"
        kind = slot.split("-")[0]
        self.procs.start(name, kind)
        self.slots[slot] = name

    async def _ready(self, slot: str) -> None:
        assert self.procs is not None
        await asyncio.to_thread(self.procs.wait_ready, self.slots[slot], 120)

    async def _kill_one(self) -> None:
        assert self.procs is not None
        kinds = ["scheduler", "worker"]
        # The first two kills are one of each kind; then at random.
        total = sum(self.kills.values())
        kind = kinds[total] if total < 2 else self.rng.choice(kinds)
        slot = self.rng.choice([s for s in self.slots if s.startswith(kind)])
        self.procs.kill(self.slots[slot])  # SIGKILL
        self.kills[kind] += 1
        self.say(f"  killed {self.slots[slot]} (SIGKILL)")
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        self._start(slot)
        await self._ready(slot)

    # -- the run ----------------------------------------------------------------------
    async def run(self) -> Report:
        c = self.config
        self.say(f"chaos run in {self.workdir}")
        client = make_client(self.mongo.url, "dialer-chaos")
        db = client["chaos"]
        try:
            await asyncio.to_thread(self.rabbit.start)
            await asyncio.to_thread(self.mongo.start)
            self.procs = Processes(self._env(), self.workdir)
            events = await self._capture_queue()
            api_port = free_port()
            key = await asyncio.to_thread(self.procs.create_key, "chaos")
            self.procs.start("api", "api", API_PORT=str(api_port))
            await asyncio.to_thread(wait_port, "127.0.0.1", api_port, 120, self.procs.procs["api"])
            for i in range(c.schedulers):
                self._start(f"scheduler-{i + 1}")
            for i in range(c.workers):
                self._start(f"worker-{i + 1}")
            for slot in list(self.slots):
                await self._ready(slot)
            started = time.monotonic()
            campaign_uuid, accepted = await self._create(api_port, key)
            self.say(f"campaign {campaign_uuid}: {accepted} calls accepted")
            completed = await self._inflict(db, campaign_uuid, accepted, started)
            elapsed = time.monotonic() - started
            await self._settle_outbox(db)
            codes = await asyncio.to_thread(self.procs.stop_all, 120)
            received = await self._drain(events)
            report = await self._check(db, campaign_uuid, accepted, received, completed)
            attempts = report.facts.get("attempts dialed", 0)
            report.facts.update(
                {
                    "processes killed (SIGKILL)": dict(self.kills),
                    "broker restarts": self.rabbit.restarts,
                    "database restarts": self.db_restarts,
                    "wall seconds": round(elapsed, 1),
                    "attempts per second": round(attempts / elapsed, 1) if elapsed else 0,
                    "processes not stopping cleanly on SIGTERM": sum(
                        1 for v in codes.values() if v
                    ),
                }
            )
            return report
        finally:
            if self.procs is not None:
                for proc in self.procs.procs.values():
                    if proc.poll() is None:
                        proc.kill()
            await client.close()
            await asyncio.to_thread(self.mongo.stop)
            await asyncio.to_thread(self.rabbit.stop)
            self.db_log.close()

    async def _capture_queue(self) -> str:
        connection = await aio_pika.connect(self.rabbit.url)
        async with connection:
            channel = await connection.channel()
            topology = await declare(channel, self.names)
            name = f"{self.names.prefix}.chaos.events"
            queue = await channel.declare_queue(
                name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            for pattern in CAPTURED:
                await queue.bind(topology.events, routing_key=pattern)
        return name

    async def _create(self, api_port: int, key: str) -> tuple[str, int]:
        start = SIM_START + timedelta(seconds=60)
        body = {
            "call_campaign_name": "chaos",
            "start_at": _iso(start),
            "end_at": _iso(start + timedelta(hours=12)),
            "speed": self.config.speed,
            "retry": self.config.retry,
            "retry_interval": 30,
            "call_records": [
                {
                    "phone_number": phone,
                    "language": "en",
                    "gender_voice": "female",
                    "agent_name": "chaos",
                    "variables": {"i": i},
                }
                for i, phone in enumerate(_phones(self.config.calls))
            ],
        }
        url = f"http://127.0.0.1:{api_port}/api/v1/call-campaign"
        headers = {"x-cybernet-api-key": key}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, headers=headers) as r,
        ):
            answer = await r.json()
            if r.status != 201:
                raise RuntimeError(f"create answered {r.status}: {answer}")
        return str(answer["uuid"]), int(answer["call_records_added"])

    async def _progress(self, db: Database, campaign_uuid: str) -> dict[str, Any] | None:
        try:
            return await db["campaigns"].find_one({"_id": campaign_uuid}, {"status": 1, "stats": 1})
        except Exception:
            return None  # the database is restarting

    async def _inflict(
        self, db: Database, campaign_uuid: str, accepted: int, started: float
    ) -> bool:
        c = self.config
        next_kill = time.monotonic() + c.kill_every
        broker_due, db_due = c.restart_broker, c.restart_database
        last_say = 0.0
        while time.monotonic() - started < c.timeout:
            doc = await self._progress(db, campaign_uuid)
            if doc is not None:
                if doc["status"] == "COMPLETED" and not broker_due and not db_due:
                    return True
                stats = doc.get("stats", {})
                final = sum(int(stats.get(s, 0)) for s in FINAL_CALL_STATUSES)
                if time.monotonic() - last_say > 5:
                    last_say = time.monotonic()
                    self.say(f"  {final}/{accepted} calls final, status {doc['status']}")
                if broker_due and final >= accepted // 4:
                    broker_due = False
                    self.say("  restarting RabbitMQ")
                    await asyncio.to_thread(self.rabbit.restart)
                    self.say("  RabbitMQ is back")
                if db_due and final >= accepted // 2:
                    db_due = False
                    self.say("  restarting the database server")
                    await asyncio.to_thread(self.mongo.stop)
                    await asyncio.to_thread(self.mongo.start)
                    self.db_restarts += 1
                    self.say("  database server is back")
            kills_left = c.max_kills is None or sum(self.kills.values()) < c.max_kills
            if c.kill_every > 0 and kills_left and time.monotonic() >= next_kill:
                await self._kill_one()
                next_kill = time.monotonic() + c.kill_every
            await asyncio.sleep(0.2)
        return False

    async def _settle_outbox(self, db: Database, within: float = 60.0) -> None:
        """Wait until every outbox entry is published (the relays run every 0.5 s)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await db["outbox"].count_documents({}) == 0:
                return
            await asyncio.sleep(0.2)

    async def _drain(self, queue_name: str, quiet: float = 3.0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        connection = await aio_pika.connect(self.rabbit.url)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1000)
            queue = await channel.get_queue(queue_name)
            try:
                async with queue.iterator(timeout=quiet) as messages:
                    async for message in messages:
                        async with message.process():
                            out.append(json.loads(message.body))
            except TimeoutError:
                pass
        return out

    async def _check(
        self,
        db: Database,
        campaign_uuid: str,
        accepted: int,
        received: list[dict[str, Any]],
        completed: bool,
    ) -> Report:
        calls = [
            d
            async for d in db["calls"].find(
                {"campaign_uuid": campaign_uuid},
                {"status": 1, "attempts": 1, "max_attempts": 1, "attempt_history": 1},
            )
        ]
        campaign = await db["campaigns"].find_one({"_id": campaign_uuid})
        assert campaign is not None
        dials = [d async for d in db["sim_dials"].find({"campaign_uuid": campaign_uuid})]
        # Every dial the provider placed (recorded) and every attempt the engine stored.
        stored = {(d["_id"], h["attempt"]) for d in calls for h in d.get("attempt_history", [])}
        dialed = {(d["call_uuid"], d["attempt"]) for d in dials}
        recovered = {
            (d["_id"], h["attempt"])
            for d in calls
            for h in d.get("attempt_history", [])
            if h["provider"].get("reason", "").startswith("attempt lease expired")
        }
        over_attempts = sum(
            1 for n in Counter(d["call_uuid"] for d in dials).values() if n > 1 + self.config.retry
        )
        # A dial whose worker was killed mid-call has no end of its own: it lasted, as far
        # as the engine is concerned, until its attempt was recovered (the history's end).
        recorded_end = {
            (d["_id"], h["attempt"]): h["ended_at"]
            for d in calls
            for h in d.get("attempt_history", [])
        }
        intervals = [
            (
                d["started_at"],
                d["ended_at"]
                or recorded_end.get((d["call_uuid"], d["attempt"]))
                or d["started_at"],
            )
            for d in dials
        ]
        peak = max_in_progress(intervals)
        above = instants_above(intervals, self.config.speed)
        statuses = Counter(d["status"] for d in calls)
        not_final = sum(n for s, n in statuses.items() if s not in FINAL_CALL_STATUSES)
        # Events: campaign created, campaign completed, one call.finished per attempt.
        seen_finished = {
            (e["data"]["call_uuid"], e["data"]["attempt"])
            for e in received
            if e["type"] == "call.finished" and e.get("campaign_uuid") == campaign_uuid
        }
        kinds = Counter(
            (e["type"], e["data"].get("status"))
            for e in received
            if e.get("campaign_uuid") == campaign_uuid
        )
        missing = len(stored - seen_finished)
        missing += (
            0
            if kinds[("campaign.created", "PENDING")] or kinds[("campaign.created", "PROCESSING")]
            else 1
        )
        missing += 0 if kinds[("campaign.status_changed", "COMPLETED")] else 1
        stats = campaign.get("stats", {})
        mismatched = [
            s
            for s in set(statuses) | {k for k in stats if k != "total"}
            if int(stats.get(s, 0)) != statuses.get(s, 0)
        ]
        if int(stats.get("total", 0)) != len(calls):
            mismatched.append("total")
        report = Report()
        report.figures = [
            Figure(
                "calls lost",
                max(0, accepted - len(calls)),
                len(calls) == accepted,
                f"{accepted} accepted, {len(calls)} stored",
            ),
            Figure(
                "attempts dialed twice",
                len(duplicate_attempts(dials)) + over_attempts,
                not duplicate_attempts(dials) and not over_attempts,
            ),
            Figure(
                "instants above speed",
                above,
                above == 0,
                f"most in progress {peak}, speed {self.config.speed}",
            ),
            Figure("calls not in a final status", not_final, not_final == 0),
            Figure(
                "campaign not COMPLETED",
                0 if campaign["status"] == "COMPLETED" else 1,
                campaign["status"] == "COMPLETED" and completed,
                campaign["status"],
            ),
            Figure(
                "events missing from the event stream",
                missing,
                missing == 0,
                f"{len(received)} captured",
            ),
            Figure(
                "stats counters off", len(mismatched), not mismatched, ", ".join(sorted(mismatched))
            ),
        ]
        lost_reasons = Counter(
            h["provider"].get("reason", "")
            for d in calls
            for h in d.get("attempt_history", [])
            if h["provider"].get("reason", "").startswith("attempt lease expired")
        )
        report.facts = {
            "calls by status": dict(sorted(statuses.items())),
            "attempts dialed": len(dials),
            "attempts stored": len(stored),
            "attempts recovered after their lease expired": dict(lost_reasons),
            "attempts never stored": len(dialed - stored),
            "dials completed whose worker died before reporting": len(dialed & recovered),
        }
        return report
