"""Consumer base: prefetch, ack after the effect is stored, dead-letter poison, drain on stop.

The outcome of a message is decided in one place (`_handle`) from typed exceptions:
- handler returns → ack;
- :class:`Reject` → dead-lettered at once with the reason;
- a transient error (the database or the broker is restarting) → the handler is run
  again in place with a back-off, for up to ``transient_seconds``: an outage is not
  the message's fault and must not use up its deliveries (handlers are idempotent);
- any other exception → requeue, until the message's last allowed delivery: then it is
  dead-lettered with the error as its reason (the quorum queue's delivery limit would
  dead-letter it anyway, without our reason), so a poison message is never retried
  forever.

Dead-lettering republishes the message to the dead-letter exchange with the headers
``x-dialer-reason`` and ``x-dialer-queue`` (confirmed), then acks it; without a
dead-letter exchange, or if that publish fails, the message is rejected without
requeue and the broker dead-letters it. Either way it is counted in
``dialer_messages_dead_lettered_total``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue

from shared.messaging.topology import DELIVERY_LIMIT
from shared.metrics import metrics
from shared.retry import with_backoff
from shared.storage.mongo import is_transient

log = structlog.get_logger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


class Reject(Exception):
    """The message can never be processed (bad shape, unknown type): dead-letter it."""


class Consumer:
    """Consumes one queue with at most ``prefetch`` messages in flight."""

    def __init__(
        self,
        queue: AbstractQueue,
        handler: Handler,
        *,
        prefetch: int,
        dead_letters: AbstractExchange | None = None,
        transient_seconds: float = 120.0,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.dead_letters = dead_letters
        self.transient_seconds = transient_seconds
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        await self.queue.channel.set_qos(prefetch_count=self.prefetch)
        self._tag = await self.queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        self._idle.clear()
        try:
            await self._handle(message)
        finally:
            self._inflight.discard(task)
            if not self._inflight:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        bound = structlog.contextvars.bound_contextvars(message_id=message.message_id)
        with bound:
            try:
                await self._run_handler(message)
            except Reject as exc:
                log.warning("message rejected", reason=str(exc), type=message.type)
                await self._dead_letter(message, f"rejected: {exc}", "rejected")
            except asyncio.CancelledError:
                await _safe_nack(message)
                raise
            except Exception as exc:
                deliveries = _delivery_count(message) + 1
                if deliveries >= DELIVERY_LIMIT:
                    log.exception("message failed on its last delivery", type=message.type)
                    await self._dead_letter(
                        message, f"failed {deliveries} times: {exc!r}", "delivery_limit"
                    )
                else:
                    log.exception("message failed; requeued", type=message.type)
                    await _safe_nack(message)
            else:
                await message.ack()

    async def _run_handler(self, message: AbstractIncomingMessage) -> None:
        await with_backoff(
            lambda: self.handler(message),
            within=self.transient_seconds,
            what=f"handling {message.type} (transient)",
            retry_on=is_transient,
            first_delay=0.2,
        )

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str, kind: str) -> None:
        metrics().messages_dead_lettered.labels(queue=self.queue.name, reason=kind).inc()
        if self.dead_letters is not None:
            try:
                await self.dead_letters.publish(
                    aio_pika.Message(
                        body=message.body,
                        headers={
                            **(message.headers or {}),
                            "x-dialer-reason": reason[:1000],
                            "x-dialer-queue": self.queue.name,
                        },
                        content_type=message.content_type,
                        message_id=message.message_id,
                        type=message.type,
                        timestamp=message.timestamp,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self.queue.name,
                )
                await message.ack()
                return
            except Exception:
                log.warning("dead-letter publish failed; rejecting instead")
        try:
            await message.reject(requeue=False)
        except Exception:
            log.warning("reject failed; the broker will redeliver")

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Stop taking messages, then wait for the ones in flight to finish."""
        if self._tag is not None:
            await self.queue.cancel(self._tag)
            self._tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        except TimeoutError:
            log.warning("drain timed out", inflight=len(self._inflight))


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """Earlier deliveries of this message (quorum queues count them in a header)."""
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0


async def _safe_nack(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except Exception:  # the channel is gone: the broker requeues it by itself
        log.warning("nack failed; the broker will redeliver")
