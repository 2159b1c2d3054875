"""Consumer base: prefetch, ack after the effect is stored, dead-letter poison, drain on stop.

The outcome of a message is decided in one place (`_handle`) from typed exceptions:
- handler returns → ack;
- :class:`Reject` → reject without requeue: dead-lettered at once with the reason;
- any other exception → requeue; the quorum queue's delivery limit dead-letters a
  message that keeps failing, so a poison message is never retried forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

log = structlog.get_logger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


class Reject(Exception):
    """The message can never be processed (bad shape, unknown type): dead-letter it."""


class Consumer:
    """Consumes one queue with at most ``prefetch`` messages in flight."""

    def __init__(self, queue: AbstractQueue, handler: Handler, *, prefetch: int) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
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
                await self.handler(message)
            except Reject as exc:
                log.warning("message rejected", reason=str(exc), type=message.type)
                await message.reject(requeue=False)
            except asyncio.CancelledError:
                await _safe_nack(message)
                raise
            except Exception:
                log.exception("message failed; requeued", type=message.type)
                await _safe_nack(message)
            else:
                await message.ack()

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Stop taking messages, then wait for the ones in flight to finish."""
        if self._tag is not None:
            await self.queue.cancel(self._tag)
            self._tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        except TimeoutError:
            log.warning("drain timed out", inflight=len(self._inflight))


async def _safe_nack(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except Exception:  # the channel is gone: the broker requeues it by itself
        log.warning("nack failed; the broker will redeliver")
