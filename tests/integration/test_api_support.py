"""Harness of the API tests: the app built in-process on real MongoDB and RabbitMQ.

Not a test module by itself (it holds no tests); its name only follows the file
ownership pattern ``test_api_*``. Each test module defines its ``api`` fixture with
:func:`running_api`.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp.test_utils import TestClient, TestServer

from services.api.app import create_app, runner_options
from services.api.auth import HEADER, KeyAuthenticator
from services.api.health import DependencyHealth
from services.api.openapi import DOCUMENTED_EXAMPLE
from services.api.ratelimit import RateLimiter
from services.scheduler.results import ResultSink
from services.scheduler.runner import CampaignRunner
from shared.clock import Clock, ScaledClock
from shared.config import SchedulerSettings
from shared.domain.messages import AttemptResult
from shared.domain.status import Outcome
from shared.messaging.connection import connect, open_publisher
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Outbox, Sender
from shared.messaging.topology import Names
from shared.service.campaigns import CampaignService
from shared.storage.engine import EngineStore
from shared.storage.idempotency import IdempotencyStore
from shared.storage.keys import ApiKeyRepository
from shared.storage.mongo import Database, Document
from tests.conftest import Servers

FIRM_A, FIRM_B = "firm-a", "firm-b"
DEFAULT_MAX_SPEED = 50


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def phone(i: int) -> str:
    """A valid Kazakh mobile number, distinct for each ``i`` below 10 million."""
    return f"+7701{i:07d}"


def record(i: int = 0, **changes: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "phone_number": phone(i),
        "language": "ru",
        "gender_voice": "female",
        "agent_name": "agent",
        "variables": {"i": i},
    }
    rec.update(changes)
    return rec


class EventTap:
    """A private queue bound to every event of the test's events exchange."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self._new = asyncio.Condition()

    async def start(self, connection: AbstractRobustConnection, exchange: str) -> None:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        envelope = Envelope.from_body(message.body)
        assert message.routing_key == f"{envelope.type}.{envelope.campaign_uuid}"
        async with self._new:
            self.received.append(envelope)
            self._new.notify_all()

    def of(self, type_: str, campaign_uuid: str | None = None) -> list[Envelope]:
        return [
            e
            for e in self.received
            if e.type == type_ and (campaign_uuid is None or e.campaign_uuid == campaign_uuid)
        ]

    async def wait_for(
        self, type_: str, campaign_uuid: str | None = None, count: int = 1, within: float = 10
    ) -> list[Envelope]:
        """Await ``count`` events of ``type_`` (no fixed sleep: woken by each arrival)."""
        async with self._new:
            await asyncio.wait_for(
                self._new.wait_for(lambda: len(self.of(type_, campaign_uuid)) >= count), within
            )
        return self.of(type_, campaign_uuid)


@dataclass
class Api:
    client: TestClient[Any, Any]
    db: Database
    events: EventTap
    scheduler: Scheduler
    keys: dict[str, str] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "a",
        json_body: Any = None,
        data: bytes | str | io.BytesIO | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> tuple[int, Any]:
        """One request as a client makes it; returns the status and the decoded JSON body."""
        hdrs = dict(headers or {})
        if key is not None:
            hdrs[HEADER] = self.keys.get(key, key)
        if json_body is not None:
            data = json.dumps(json_body)
            hdrs.setdefault("content-type", "application/json")
        async with self.client.request(
            method, path, data=data, headers=hdrs, params=params
        ) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("content-type", "")
            body = json.loads(raw) if ctype.startswith("application/json") else raw.decode()
            return resp.status, body

    async def create(self, n: int = 0, key: str = "a", **fields: Any) -> dict[str, Any]:
        """Create a running campaign (window open now) with ``n`` distinct numbers."""
        now = datetime.now(UTC)
        payload = {
            "call_campaign_name": "test",
            "start_at": iso(now - timedelta(hours=1)),
            "end_at": iso(now + timedelta(hours=8)),
            "speed": 5,
            "call_records": [record(i) for i in range(n)],
            **fields,
        }
        status, created = await self.call(
            "POST", "/api/v1/call-campaign", key=key, json_body=payload
        )
        assert status == 201, created
        return dict(created)

    async def calls(self, campaign_uuid: str) -> list[Document]:
        return [
            d async for d in self.db["calls"].find({"campaign_uuid": campaign_uuid}).sort("seq", 1)
        ]

    async def campaign(self, campaign_uuid: str) -> Document:
        doc = await self.db["campaigns"].find_one({"_id": campaign_uuid})
        assert doc is not None
        return doc

    async def snapshot(self) -> dict[str, list[Document]]:
        """Every campaign, call and page document: to prove that nothing changed."""
        return {
            name: [d async for d in self.db[name].find({}).sort("_id", 1)]
            for name in ("campaigns", "calls", "call_pages")
        }

    async def claim(self, campaign_uuid: str, call_uuids: list[str]) -> list[str]:
        """Dispatch these calls with the scheduler's own claim; returns the claimed ids."""
        seqs = {
            d["_id"]: int(d["seq"])
            async for d in self.db["calls"].find({"_id": {"$in": call_uuids}}, {"seq": 1})
        }
        return await self.scheduler.claim(campaign_uuid, [seqs[c] for c in call_uuids])

    async def finish(self, call_uuid: str, outcome: str = "ANSWERED") -> str:
        """Report the attempt in progress like a dialer worker; returns the call's status."""
        return await self.scheduler.finish(call_uuid, Outcome(outcome))


class Scheduler:
    """The scheduler's dispatch claim and result path, driven call by call.

    :meth:`claim` does what :class:`CampaignRunner` does with the calls it chose: one
    transaction reserves the slots, moves the calls still PENDING to IN_PROGRESS and
    stores their dial commands and ``call.dispatched`` events in the outbox; after the
    commit they are published. :meth:`finish` stores a result through the scheduler's
    :class:`ResultSink`.
    """

    def __init__(self, db: Database, sender: Sender) -> None:
        self.db = db
        self.store = EngineStore(db)
        self.outbox = Outbox(db, sender)
        self.clock = ScaledClock()
        self.settings = SchedulerSettings()
        self.sink = ResultSink(self.store, self.outbox, self.clock, 1, lambda _: None)

    async def claim(self, campaign_uuid: str, seqs: list[int]) -> list[str]:
        """Claim the calls ``seqs`` (those no longer PENDING are skipped, as in dispatch)."""
        campaign = await self.store.campaign(campaign_uuid)
        assert campaign is not None
        runner = CampaignRunner(
            campaign_uuid, self.store, self.outbox, self.clock, self.settings, self.sink.settle_now
        )
        lease = timedelta(seconds=self.settings.attempt_lease_seconds)
        claimed, reserved, entries = await runner._claim(campaign, seqs, self.clock.now(), lease)
        assert reserved, "no free slot: the test campaign must be PROCESSING, its speed enough"
        await self.outbox.deliver(entries)
        return [c["_id"] for c in claimed]

    async def finish(self, call_uuid: str, outcome: Outcome) -> str:
        """Store the result of the call's attempt in progress; returns its new status."""
        call = await self.db["calls"].find_one({"_id": call_uuid})
        assert call is not None and call["status"] == "IN_PROGRESS", call
        now = self.clock.now()
        await self.sink.submit(
            AttemptResult(
                call_uuid=call_uuid,
                campaign_uuid=call["campaign_uuid"],
                seq=call["seq"],
                attempt=call["attempts"],
                outcome=outcome,
                started_at=call["dispatch"]["claimed_at"],
                answered_at=now if outcome is Outcome.ANSWERED else None,
                ended_at=now,
            )
        )
        after = await self.db["calls"].find_one({"_id": call_uuid}, {"status": 1})
        assert after is not None
        return str(after["status"])


@asynccontextmanager
async def running_api(
    servers: Servers,
    db: Database,
    amqp_prefix: str,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    key_cache_seconds: float = 2.0,
    idempotency: IdempotencyStore | None = None,
    rate_limiter: RateLimiter | None = None,
    read_timeout: float = 60.0,
    clock: Clock | None = None,
) -> AsyncIterator[Api]:
    """The API app on a test server, with keys for two firms and an inactive one.

    Idempotency keys are on (kept 24 h unless ``idempotency`` says otherwise); the rate
    limit is off unless ``rate_limiter`` is given (the suite is a heavy client). The
    campaign service reads ``clock`` (real time unless given).
    """
    connection = await connect(servers.amqp_url, "test-api")
    try:
        names = Names(amqp_prefix)
        publisher = await open_publisher(connection, names)
        events = EventTap()
        await events.start(connection, names.events)
        service = CampaignService(
            db, publisher, clock or ScaledClock(), default_firm_max_speed=DEFAULT_MAX_SPEED
        )
        repo = ApiKeyRepository(db)
        now = datetime.now(UTC)
        keys = {}
        for name, firm in (("a", FIRM_A), ("b", FIRM_B), ("inactive", FIRM_A)):
            key, clear = await repo.create(firm, now)
            keys[name] = clear
            if name == "inactive":
                await repo.deactivate(key.key_id, now)
        keys["unknown"] = "dk_this-key-does-not-exist"
        app = create_app(
            service,
            KeyAuthenticator(repo, key_cache_seconds),
            DependencyHealth(db, lambda: not connection.is_closed),
            max_body_bytes=max_body_bytes,
            idempotency=idempotency or IdempotencyStore(db, 24 * 3600),
            rate_limiter=rate_limiter,
            read_timeout=read_timeout,
        )
        server = TestServer(app)
        await server.start_server(**runner_options(read_timeout))
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        scheduler = Scheduler(db, publisher)
        scheduler.sink.start()
        try:
            yield Api(client, db, events, scheduler, keys)
        finally:
            await scheduler.sink.stop()
            await client.close()
    finally:
        await connection.close()


def documented_example() -> dict[str, Any]:
    return json.loads(json.dumps(DOCUMENTED_EXAMPLE))  # type: ignore[no-any-return]
