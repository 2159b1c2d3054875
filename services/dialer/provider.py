"""Telephony provider port and the simulated provider (the default).

Magic numbers fix the outcome of a call, whatever the configured mix, by the last
four digits of the E.164 number (all attempts unless noted):

| ends in | outcome |
|---|---|
| 0001 | ANSWERED |
| 0002 | NO_ANSWER |
| 0003 | BUSY |
| 0004 | FAILED (provider error) |
| 0005 | NO_ANSWER on the first attempt, ANSWERED on later ones |
| 0006 | BUSY on every attempt but the last possible one (attempt 11), so retries are exercised |
| 0007 | ANSWERED; a crash drill with SIM_CRASH_DRILL=true (below) |

With SIM_CRASH_DRILL=true, the worker process dies (exit 70, no clean-up) right after
placing the first attempt of a number ending in 0007, before reporting it.

Any other number gets an outcome drawn from the configured mix
(SIM_ANSWER_RATIO, SIM_BUSY_RATIO, SIM_FAILURE_RATIO; the rest NO_ANSWER), the
draw being a function of (call uuid, attempt, SIM_SEED) so reruns are repeatable.
Every attempt is recorded in the MongoDB collection ``sim_dials``
(call_uuid, attempt, campaign_uuid, phone_number, started_at, answered_at, ended_at,
outcome, worker), where tests and users can read it; duplicates would show there. The
record is written when the call starts ringing and completed when it ends, so a dial
whose worker died mid-call is there too, with ``ended_at`` and ``outcome`` ``None``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import datetime
from typing import Any, Protocol

import structlog

from shared.clock import ScaledClock
from shared.config import WorkerSettings
from shared.domain.messages import AttemptResult, DialCommand
from shared.domain.status import Outcome
from shared.retry import with_backoff
from shared.storage.batching import GroupWriter
from shared.storage.mongo import Database

log = structlog.get_logger(__name__)

#: How long (wall seconds) a worker keeps trying to record a placed call.
RECORD_RETRY_SECONDS = 300.0

MAGIC: dict[str, Outcome] = {
    "0001": Outcome.ANSWERED,
    "0002": Outcome.NO_ANSWER,
    "0003": Outcome.BUSY,
    "0004": Outcome.FAILED,
    "0007": Outcome.ANSWERED,
}
#: With SIM_CRASH_DRILL, the first attempt of these numbers kills the worker after dialing.
CRASH_DRILL_SUFFIX = "0007"
#: The worker's exit status in a crash drill (EX_SOFTWARE).
CRASH_DRILL_EXIT = 70


class TelephonyProvider(Protocol):
    async def dial(self, command: DialCommand) -> AttemptResult:
        """Place one attempt and return when it has ended."""
        ...

    async def close(self) -> None: ...


def magic_outcome(phone: str, attempt: int) -> Outcome | None:
    suffix = phone[-4:]
    if suffix in MAGIC:
        return MAGIC[suffix]
    if suffix == "0005":
        return Outcome.NO_ANSWER if attempt == 1 else Outcome.ANSWERED
    if suffix == "0006":
        return Outcome.ANSWERED if attempt >= 11 else Outcome.BUSY
    return None


class SimulatedProvider:
    """Rings for ``sim_ring_seconds`` then talks ``sim_talk_seconds`` (campaign time)."""

    def __init__(self, settings: WorkerSettings, clock: ScaledClock, db: Database, worker: str):
        self.settings = settings
        self.clock = clock
        self.log = GroupWriter(db["sim_dials"])
        self.worker = worker

    def _draw(self, command: DialCommand) -> Outcome:
        fixed = magic_outcome(command.phone_number, command.attempt)
        if fixed is not None:
            return fixed
        seed = f"{command.call_uuid}:{command.attempt}:{self.settings.sim_seed}"
        x = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64
        s = self.settings
        if x < s.sim_answer_ratio:
            return Outcome.ANSWERED
        if x < s.sim_answer_ratio + s.sim_busy_ratio:
            return Outcome.BUSY
        if x < s.sim_answer_ratio + s.sim_busy_ratio + s.sim_failure_ratio:
            return Outcome.FAILED
        return Outcome.NO_ANSWER

    async def dial(self, command: DialCommand) -> AttemptResult:
        outcome = self._draw(command)
        started = self.clock.now()
        if command.not_after is not None and started >= command.not_after:
            return AttemptResult(
                call_uuid=command.call_uuid,
                seq=command.seq,
                campaign_uuid=command.campaign_uuid,
                attempt=command.attempt,
                outcome=Outcome.FAILED,
                started_at=started,
                ended_at=started,
                provider={"reason": "calling window closed before dialing"},
                dialed=False,
            )
        dial_id = f"{command.call_uuid}:{command.attempt}:{uuid.uuid4().hex}"
        await self._record_start(dial_id, command, started)
        answered: datetime | None = None
        provider: dict[str, Any] = {"provider": "simulated", "worker": self.worker}
        if outcome is Outcome.FAILED:
            provider["error"] = "simulated network error"
        else:
            await self.clock.sleep(self.settings.sim_ring_seconds)
        if outcome is Outcome.ANSWERED:
            answered = self.clock.now()
            await self.clock.sleep(self.settings.sim_talk_seconds)
        ended = self.clock.now()
        result = AttemptResult(
            call_uuid=command.call_uuid,
            seq=command.seq,
            campaign_uuid=command.campaign_uuid,
            attempt=command.attempt,
            outcome=outcome,
            started_at=started,
            answered_at=answered,
            ended_at=ended,
            provider=provider,
        )
        await self._record_end(dial_id, result)
        if (
            self.settings.sim_crash_drill
            and command.attempt == 1
            and command.phone_number.endswith(CRASH_DRILL_SUFFIX)
        ):
            log.critical("crash drill: the worker dies after dialing, before reporting")
            os._exit(CRASH_DRILL_EXIT)
        return result

    async def _record_start(self, dial_id: str, command: DialCommand, started: datetime) -> None:
        """Written before the call rings, so the log has every dial, even one whose worker
        dies during the call (its ``ended_at`` and ``outcome`` stay ``None``).

        A database outage must not lose the record, so the write is retried; ``dial_id``
        is fixed for this dial, so a retried insert that did land is a duplicate key
        (ignored), never a second record.
        """
        doc = {
            "_id": dial_id,
            "call_uuid": command.call_uuid,
            "attempt": command.attempt,
            "campaign_uuid": command.campaign_uuid,
            "phone_number": command.phone_number,
            "started_at": started,
            "answered_at": None,
            "ended_at": None,
            "outcome": None,
            "worker": self.worker,
        }
        await with_backoff(
            lambda: self.log.insert(doc), within=RECORD_RETRY_SECONDS, what="recording the dial"
        )

    async def _record_end(self, dial_id: str, result: AttemptResult) -> None:
        """Written before the result is reported (retried like the start)."""
        end = {
            "answered_at": result.answered_at,
            "ended_at": result.ended_at,
            "outcome": result.outcome.value,
        }
        await with_backoff(
            lambda: self.log.update({"_id": dial_id}, {"$set": end}),
            within=RECORD_RETRY_SECONDS,
            what="recording the end of the dial",
        )

    async def close(self) -> None:
        return None
