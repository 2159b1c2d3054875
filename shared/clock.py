"""Clocks. Every component takes one; rules receive `now` from it.

`ScaledClock` runs campaign time faster than wall time, the same way in every
process that shares `clock_origin`, so a stack can run days of campaign in minutes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shared.config import CommonSettings


class Clock(Protocol):
    """Campaign time."""

    def now(self) -> datetime: ...

    def wall_seconds(self, campaign_seconds: float) -> float:
        """Wall seconds that pass while ``campaign_seconds`` pass in campaign time."""
        ...

    async def sleep(self, campaign_seconds: float) -> None: ...


class ScaledClock:
    """``now = sim_origin + (wall - origin) * rate``; ``rate == 1`` with no origin is real time."""

    def __init__(
        self,
        rate: float = 1.0,
        origin: datetime | None = None,
        sim_origin: datetime | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.origin = origin or datetime.now(UTC)
        self.sim_origin = sim_origin or self.origin

    def now(self) -> datetime:
        elapsed = time.time() - self.origin.timestamp()
        return self.sim_origin + timedelta(seconds=elapsed * self.rate)

    def wall_seconds(self, campaign_seconds: float) -> float:
        return max(0.0, campaign_seconds / self.rate)

    async def sleep(self, campaign_seconds: float) -> None:
        await asyncio.sleep(self.wall_seconds(campaign_seconds))

    async def sleep_until(self, at: datetime) -> None:
        await self.sleep((at - self.now()).total_seconds())


def wall_now() -> datetime:
    """Real time, for leases and liveness (never for campaign rules)."""
    return datetime.now(UTC)


def clock_from(settings: CommonSettings) -> ScaledClock:
    """The campaign clock every process of a stack shares (``CLOCK_*`` settings)."""
    return ScaledClock(settings.clock_rate, settings.clock_origin, settings.clock_sim_origin)
