"""The dial-command handler: exactly one dial per (call, attempt), then report the result."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from services.dialer.provider import TelephonyProvider
from shared.clock import ScaledClock
from shared.domain.messages import ATTEMPT_RESULT, AttemptResult, DialCommand, claim_key
from shared.messaging.connection import Publisher
from shared.messaging.consumer import Reject
from shared.messaging.envelope import Envelope
from shared.messaging.topology import RESULT_KEY
from shared.metrics import metrics
from shared.retry import with_backoff
from shared.storage.batching import GroupWriter
from shared.storage.mongo import Database, is_transient

log = structlog.get_logger(__name__)

#: How long (wall seconds) a worker keeps trying to publish a result after dialing.
REPORT_RETRY_SECONDS = 300.0
#: How long (wall seconds) a worker keeps trying to store its claim on an attempt.
CLAIM_RETRY_SECONDS = 60.0


class DialHandler:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        provider: TelephonyProvider,
        clock: ScaledClock,
        worker_id: str,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.attempts = db["dial_attempts"]
        self.workers = db["workers"]
        self.heartbeat_seconds = heartbeat_seconds
        self.inflight: set[str] = set()  # claims of the calls this worker is placing
        self.claims = GroupWriter(self.attempts)
        self.publisher = publisher
        self.provider = provider
        self.clock = clock
        self.worker_id = worker_id

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.from_body(message.body)
            command = DialCommand.model_validate(envelope.data)
        except (ValueError, ValidationError) as exc:
            raise Reject(f"malformed dial command: {exc}") from exc
        if message.timestamp is not None:
            lag = (datetime.now(UTC) - message.timestamp.astimezone(UTC)).total_seconds()
            metrics().dial_queue_lag.observe(max(0.0, lag))
        with structlog.contextvars.bound_contextvars(
            campaign_uuid=command.campaign_uuid,
            call_uuid=command.call_uuid,
            firm_id=command.firm_id,
            attempt=command.attempt,
        ):
            await self.handle(command, envelope.firm_id)

    async def handle(self, command: DialCommand, firm_id: str | None) -> None:
        # The claim on (call, attempt) is stored before dialing: a redelivered command
        # (or one published twice) finds it and is dropped, so an attempt is dialed once.
        key = claim_key(command.call_uuid, command.attempt)
        if await self._claim(key):
            self.inflight.add(key)
            try:
                await self._dial_and_report(command, firm_id)
            finally:
                self.inflight.discard(key)
            return
        log.warning("duplicate dial command dropped")
        metrics().dial_commands.labels(result="duplicate").inc()

    async def _dial_and_report(self, command: DialCommand, firm_id: str | None) -> None:
        now = self.clock.now()
        started = Envelope(
            type="call.started",
            occurred_at=now,
            firm_id=firm_id,
            campaign_uuid=command.campaign_uuid,
            data={
                "call_uuid": command.call_uuid,
                "attempt": command.attempt,
                "phone_number": command.phone_number,
            },
        )
        try:
            await self.publisher.event(started)
        except Exception as exc:
            # Informational only: the claim is stored, so the call is placed regardless.
            log.warning("call.started not published", error=repr(exc))
        result = await self.provider.dial(command)
        if not result.dialed:
            # The attempt number is handed out again when the call is next claimed.
            await self.attempts.delete_one({"_id": claim_key(command.call_uuid, command.attempt)})
        await self._report(result, firm_id)
        m = metrics()
        m.dial_commands.labels(result="dialed" if result.dialed else "not_dialed").inc()
        if result.dialed:
            m.attempt_seconds.labels(outcome=result.outcome.value).observe(result.duration_seconds)
        log.info("attempt ended", outcome=result.outcome.value)

    async def _claim(self, key: str) -> bool:
        """Store the (call, attempt) claim ``key``; False if someone else holds it.

        An insert whose answer was lost to a database outage may have landed: it is
        retried, and a duplicate that carries this try's nonce is our own claim.
        """
        nonce = uuid.uuid4().hex
        doc = {"_id": key, "worker": self.worker_id, "nonce": nonce, "claimed_at": self.clock.now()}

        async def insert() -> bool:
            if await self.claims.insert(doc):
                return True
            held = await self.attempts.find_one({"_id": key}, {"nonce": 1})
            return held is not None and held.get("nonce") == nonce

        return await with_backoff(
            insert, within=CLAIM_RETRY_SECONDS, what="claiming the attempt", retry_on=is_transient
        )

    async def beat(self) -> None:
        """Say this worker lives and which calls it is placing (one small write)."""
        await self.workers.update_one(
            {"_id": self.worker_id},
            {
                "$set": {
                    "alive_until": datetime.now(UTC)
                    + timedelta(seconds=3 * self.heartbeat_seconds),
                    "calls": sorted(self.inflight),
                }
            },
            upsert=True,
        )

    async def keep_alive(self) -> None:
        """Beat every ``heartbeat_seconds``, so that a long call is not taken for lost when
        its attempt lease runs out (the scheduler looks for it in the live workers' lists)."""
        while True:
            try:
                await self.beat()
            except Exception as exc:
                log.warning("worker heartbeat failed", error=repr(exc))
            await asyncio.sleep(self.heartbeat_seconds)

    async def leave(self) -> None:
        await self.workers.delete_one({"_id": self.worker_id})

    async def _report(self, result: AttemptResult, firm_id: str | None) -> None:
        """Publish the result (confirmed). The call has been placed, so its result must
        not be lost to a broker restart: retry until the reconnected channel takes it.
        (If this process dies first, the attempt lease recovers the attempt as FAILED.)"""
        envelope = Envelope(
            type=ATTEMPT_RESULT,
            occurred_at=result.ended_at,
            firm_id=firm_id,
            campaign_uuid=result.campaign_uuid,
            data=result.model_dump(mode="json"),
        )
        await with_backoff(
            lambda: self.publisher.work(RESULT_KEY, envelope),
            within=REPORT_RETRY_SECONDS,
            what="publishing the result",
        )
