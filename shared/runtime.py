"""Process life cycle: run an async service until SIGTERM/SIGINT, then let it drain."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``main(stop)``; ``stop`` is set on SIGTERM or SIGINT. ``main`` drains and returns."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except Exception:
        log.exception("process failed")
        return 1
    return 0
