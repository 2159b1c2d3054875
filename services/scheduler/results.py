"""Attempt results: persisted in batches, then published as `call.finished` events.

Each consumed result waits in a batch; a batch is written with one transaction
(bulk write of the calls, one ``$inc`` per campaign, its ``call.finished`` events into
the outbox), then its events are published and its messages acked. A finished call
frees its slot in that same write, and the owning campaign's runner is woken at once
(locally or through its wake binding).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.clock import ScaledClock
from shared.domain.messages import AttemptResult
from shared.messaging.consumer import Reject
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Entry, Outbox
from shared.metrics import metrics
from shared.storage.engine import EngineStore, Settled

log = structlog.get_logger(__name__)


class ResultSink:
    def __init__(
        self,
        store: EngineStore,
        outbox: Outbox,
        clock: ScaledClock,
        batch_size: int,
        on_settled: Callable[[Settled], None],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.batch_size = batch_size
        self.on_settled = on_settled
        self._batch: list[tuple[AttemptResult, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Consumer handler: returns once the result is stored (then it is acked)."""
        try:
            result = AttemptResult.model_validate(Envelope.from_body(message.body).data)
        except (ValueError, ValidationError) as exc:
            raise Reject(f"malformed attempt result: {exc}") from exc
        await self.submit(result)

    async def submit(self, result: AttemptResult) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((result, future))
        self._ready.set()
        await future

    async def settle_now(self, results: Sequence[AttemptResult]) -> None:
        """Store results that did not come through the queue (recovered attempts)."""
        await asyncio.gather(*(self.submit(r) for r in results))

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            if len(self._batch) < self.batch_size:
                # Let the messages delivered in the same burst join this batch.
                await asyncio.sleep(0.002)
            batch, self._batch = self._batch[: self.batch_size], self._batch[self.batch_size :]
            if not self._batch:
                self._ready.clear()
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[AttemptResult, asyncio.Future[None]]]) -> None:
        entries: list[Entry] = []

        async def announce(session: AsyncClientSession, settled: list[Settled]) -> None:
            nonlocal entries
            entries = [Entry.event(_finished_event(s)) for s in settled]
            await self.outbox.stage(session, entries)

        try:
            settled = await self.store.settle([r for r, _ in batch], self.clock.now(), announce)
        except Exception as exc:
            log.exception("storing results failed; they will be redelivered")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        await self.outbox.deliver(entries)
        m = metrics()
        m.result_batch_size.observe(len(batch))
        for s in settled:
            m.calls_finished.labels(outcome=s.result.outcome.value, status=s.status.value).inc()
            self.on_settled(s)
        for _, future in batch:
            if not future.done():
                future.set_result(None)


def _finished_event(s: Settled) -> Envelope:
    return Envelope(
        type="call.finished",
        occurred_at=s.result.ended_at,
        firm_id=s.firm_id,
        campaign_uuid=s.campaign_uuid,
        data={
            "call_uuid": s.call_uuid,
            "attempt": s.result.attempt,
            "status": s.status.value,
            "next_attempt_at": s.next_attempt_at.isoformat() if s.next_attempt_at else None,
            "result": s.result.model_dump(mode="json"),
        },
    )
