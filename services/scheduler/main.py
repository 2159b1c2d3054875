"""Wiring of the scheduler process: leases, campaign runners, result persistence, wakes."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import uuid
from datetime import timedelta

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from services.scheduler.results import ResultSink
from services.scheduler.runner import CampaignRunner
from shared.clock import ScaledClock, clock_from, wall_now
from shared.config import SchedulerSettings
from shared.messaging.connection import Publisher, connect, open_publisher
from shared.messaging.consumer import Consumer, Handler, Reject
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Outbox
from shared.messaging.topology import Names, event_key
from shared.metrics import metrics, start_metrics_server
from shared.runtime import run_until_signal
from shared.storage.engine import EngineStore, Settled
from shared.storage.mongo import ensure_indexes, make_client
from shared.storage.sessions import SessionFence

log = structlog.get_logger(__name__)

#: Events of an owned campaign that its runner reacts to at once.
WAKE_EVENTS = ("call.finished", "campaign.appended")


class Scheduler:
    def __init__(
        self,
        settings: SchedulerSettings,
        store: EngineStore,
        publisher: Publisher,
        outbox: Outbox,
        clock: ScaledClock,
        wake_queue: AbstractQueue,
    ) -> None:
        self.id = (
            settings.scheduler_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.outbox = outbox
        self.clock = clock
        self.wake_queue = wake_queue
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.runners: dict[str, tuple[CampaignRunner, asyncio.Task[None]]] = {}
        self.share = 1
        self.sink = ResultSink(store, outbox, clock, settings.result_batch_size, self._on_settled)

    # -- runners --------------------------------------------------------------------
    def _on_settled(self, settled: Settled) -> None:
        entry = self.runners.get(settled.campaign_uuid)
        if entry is not None:
            entry[0].wake()
            if settled.next_attempt_at is not None:
                entry[0].wake(settled.next_attempt_at)

    async def _start_runner(self, campaign_uuid: str) -> None:
        if campaign_uuid in self.runners:
            return
        runner = CampaignRunner(
            campaign_uuid,
            self.store,
            self.outbox,
            self.clock,
            self.settings,
            self.sink.settle_now,
        )
        for event in WAKE_EVENTS:
            await self.wake_queue.bind(
                self.publisher.topology.events, routing_key=event_key(event, campaign_uuid)
            )
        task = asyncio.create_task(self._run(runner))
        self.runners[campaign_uuid] = (runner, task)
        metrics().lease_takeovers.inc()
        log.info("campaign taken", campaign_uuid=campaign_uuid, owned=len(self.runners))

    async def _run(self, runner: CampaignRunner) -> None:
        try:
            await runner.run()
        finally:
            self.runners.pop(runner.campaign_uuid, None)
            await asyncio.shield(self._let_go(runner.campaign_uuid))

    async def _let_go(self, campaign_uuid: str) -> None:
        try:
            for event in WAKE_EVENTS:
                await self.wake_queue.unbind(
                    self.publisher.topology.events, routing_key=event_key(event, campaign_uuid)
                )
            await self.store.release(self.id, campaign_uuid)
        except Exception:
            log.warning(
                "releasing a campaign failed; its lease will expire", campaign_uuid=campaign_uuid
            )

    # -- leases ---------------------------------------------------------------------
    async def lease_loop(self) -> None:
        while True:
            try:
                await self._lease_round()
            except Exception:
                log.exception("lease round failed")
            await asyncio.sleep(self.settings.lease_seconds / 3)

    async def _lease_round(self) -> None:
        now = wall_now()
        alive = await self.store.heartbeat(self.id, now, self.lease)
        active = await self.store.count_active()
        self.share = max(1, math.ceil(active / max(1, alive)))
        held = await self.store.renew(self.id, list(self.runners), now, self.lease)
        for campaign_uuid in list(self.runners):
            if campaign_uuid not in held:
                log.warning("lease lost", campaign_uuid=campaign_uuid)
                self.runners[campaign_uuid][1].cancel()
        while len(self.runners) < self.share:
            doc = await self.store.acquire(self.id, now, self.lease)
            if doc is None:
                break
            await self._start_runner(doc["_id"])

    async def on_campaign_event(self, message: AbstractIncomingMessage) -> None:
        """A campaign was created or appended to: take it now if it is free."""
        try:
            campaign_uuid = Envelope.from_body(message.body).campaign_uuid
        except ValueError as exc:
            raise Reject(f"malformed campaign event: {exc}") from exc
        if campaign_uuid is None:
            raise Reject("campaign event without campaign_uuid")
        if campaign_uuid in self.runners:
            self.runners[campaign_uuid][0].wake()
            return
        if len(self.runners) <= self.share:
            doc = await self.store.acquire(self.id, wall_now(), self.lease, campaign_uuid)
            if doc is not None:
                await self._start_runner(campaign_uuid)

    async def on_wake(self, message: AbstractIncomingMessage) -> None:
        envelope = Envelope.from_body(message.body)
        entry = self.runners.get(envelope.campaign_uuid or "")
        if entry is None:
            return
        if envelope.type == "campaign.appended":
            entry[0].rewind(int(envelope.data["seq_from"]))
        entry[0].wake()
        due = envelope.data.get("next_attempt_at")
        if due:
            from datetime import datetime

            entry[0].wake(datetime.fromisoformat(due))

    async def stop(self) -> None:
        owned = list(self.runners)
        for _, task in list(self.runners.values()):
            task.cancel()
        await asyncio.gather(*(t for _, t in list(self.runners.values())), return_exceptions=True)
        await self.store.leave(self.id, owned)


async def serve(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    start_metrics_server(settings.metrics_port)
    clock = clock_from(settings)
    mongo = make_client(settings.mongodb_url, "dialer-scheduler")
    db = mongo[settings.mongodb_db]
    await ensure_indexes(db)
    names = Names(settings.amqp_prefix)
    connection = await connect(settings.amqp_url, "dialer-scheduler")
    try:
        publisher = await open_publisher(connection, names)
        wake_channel = await connection.channel()
        wake_queue = await wake_channel.declare_queue(exclusive=True, auto_delete=True)
        outbox = Outbox(db, publisher)
        scheduler = Scheduler(settings, EngineStore(db), publisher, outbox, clock, wake_queue)
        structlog.contextvars.bind_contextvars(scheduler=scheduler.id)
        fence = SessionFence(db, scheduler.id, "scheduler")
        await fence.start(timedelta(seconds=settings.session_fence_seconds))
        scheduler.sink.start()
        results_channel = await connection.channel()
        results = Consumer(
            await results_channel.get_queue(names.results_queue),
            scheduler.sink,
            prefetch=settings.result_batch_size * 2,
            dead_letters=await results_channel.get_exchange(names.dlx),
        )
        campaigns_channel = await connection.channel()
        campaigns = Consumer(
            await campaigns_channel.get_queue(names.campaigns_queue),
            scheduler.on_campaign_event,
            prefetch=16,
            dead_letters=await campaigns_channel.get_exchange(names.dlx),
        )
        await wake_queue.consume(_no_ack(scheduler.on_wake), no_ack=True)
        await results.start()
        await campaigns.start()
        leases = asyncio.create_task(scheduler.lease_loop())
        relay = asyncio.create_task(
            outbox.relay_forever(
                settings.outbox_relay_seconds, timedelta(seconds=settings.outbox_grace_seconds)
            )
        )
        log.info("scheduler ready")
        await stop.wait()
        log.info("scheduler stopping")
        leases.cancel()
        relay.cancel()
        await campaigns.stop(settings.drain_seconds)
        await scheduler.stop()
        await results.stop(settings.drain_seconds)
        await scheduler.sink.stop()
        await fence.stop()
    finally:
        await connection.close()
        await mongo.close()
    log.info("scheduler stopped")


def _no_ack(handler: Handler) -> Handler:
    """A handler for a no-ack queue: a failure is logged, never raised into aio-pika."""

    async def safe(message: AbstractIncomingMessage) -> None:
        try:
            await handler(message)
        except Exception:
            log.exception("wake message ignored")

    return safe


def run(settings: SchedulerSettings) -> int:
    return run_until_signal(lambda stop: serve(settings, stop))
