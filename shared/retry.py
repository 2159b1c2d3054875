"""Retry with exponential back-off until a deadline: for work that must not be lost to
a server restarting (a result to report, a claim to store, a message to handle)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def with_backoff(
    op: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    retry_on: Callable[[BaseException], bool] = lambda exc: True,
    first_delay: float = 0.1,
    max_delay: float = 5.0,
) -> T:
    """Run ``op`` until it succeeds; retry a failure ``retry_on`` accepts, waiting 0.1 s,
    0.2 s, ... (at most ``max_delay``), for up to ``within`` wall seconds; then raise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = first_delay
    while True:
        try:
            return await op()
        except Exception as exc:
            if not retry_on(exc) or loop.time() + delay > deadline:
                raise
            log.warning(f"{what} failed; retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
