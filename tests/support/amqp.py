"""Reading messages in tests: the next one of a queue, acked, or a failure after a deadline."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue


async def next_message(queue: AbstractQueue, within: float = 20) -> AbstractIncomingMessage:
    async with queue.iterator() as messages, asyncio.timeout(within):
        async for message in messages:
            await message.ack()
            return message
    raise AssertionError("no message")
