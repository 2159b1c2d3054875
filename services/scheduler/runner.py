"""One campaign's dispatch loop, run by the scheduler that holds its lease.

The loop sleeps until something can change what it should do: a finished call (a
slot is free), appended records, a retry or the window coming due, or the safety
tick. Each step reads the campaign document once, fills free slots with a claim
transaction, and moves the campaign through its statuses. The concurrency limit is
enforced by the claim itself (a conditional ``$inc`` of ``stats.IN_PROGRESS``), so it
holds globally even if two schedulers briefly believe they own the campaign.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.clock import ScaledClock, wall_now
from shared.config import SchedulerSettings
from shared.domain.messages import DIAL, DialCommand
from shared.domain.status import FINAL_CAMPAIGN_STATUSES, CallStatus, CampaignStatus
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Entry, Outbox
from shared.messaging.topology import DIAL_KEY
from shared.metrics import metrics
from shared.service.lifecycle import end_campaign, status_changed
from shared.storage.engine import EngineStore, lost_attempt, window_of
from shared.storage.mongo import Document, is_transient

log = structlog.get_logger(__name__)

#: Calls read per bounded ``seq`` range when looking for first attempts.
SCAN_BLOCK = 256
#: Wall seconds between looks for attempts whose lease expired (each reads every call
#: in progress of the campaign).
RECOVERY_SECONDS = 3.0
#: Consecutive dispatch steps failing with the same non-transient error after which the
#: engine gives up on a campaign: it becomes FAILED with the error as its reason.
FAIL_AFTER_ERRORS = 5
#: Wall seconds between looks for PENDING calls the first-attempt scan passed before
#: they were stored (an append that died after reserving seqs); doubled after each
#: look that finds none, up to an hour.
STRANDED_CHECK_SECONDS = 60.0


class CampaignRunner:
    def __init__(
        self,
        campaign_uuid: str,
        store: EngineStore,
        outbox: Outbox,
        clock: ScaledClock,
        settings: SchedulerSettings,
        settle: Any,
    ) -> None:
        self.campaign_uuid = campaign_uuid
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.settings = settings
        self.settle = settle  # async (results) -> None, the scheduler's result path
        self._wake = asyncio.Event()
        self._timers: list[datetime] = []
        self._cursor: int | None = None  # first-attempt scan position (seq); None: not yet read
        self._firsts: deque[Document] = deque()  # read, PENDING, not yet claimed
        self._carried_for: datetime | None = None
        self._last_recovery = 0.0
        self._stranded_check_at = 0.0
        self._stranded_every = STRANDED_CHECK_SECONDS

    def rewind(self, seq: int) -> None:
        """Calls from ``seq`` on were stored after the scan may have passed them (an append
        reserves its sequence numbers before it stores the calls): read them again."""
        if self._cursor is not None and seq < self._cursor:
            self._cursor = seq
        self._wake.set()

    def wake(self, at: datetime | None = None) -> None:
        """Re-check now, or at campaign time ``at``."""
        if at is not None and at > self.clock.now():
            heapq.heappush(self._timers, at)
        else:
            self._wake.set()

    async def run(self) -> None:
        errors: list[str] = []
        with structlog.contextvars.bound_contextvars(campaign_uuid=self.campaign_uuid):
            while True:
                try:
                    due = await self.step()
                    errors.clear()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("dispatch step failed; retrying")
                    due = None
                    if not is_transient(exc):
                        errors.append(f"{type(exc).__name__}: {exc}")
                        if len(errors) >= FAIL_AFTER_ERRORS and len(set(errors)) == 1:
                            due = await self._give_up(errors[-1])
                if due == "stop":
                    return
                await self._sleep(due if isinstance(due, datetime) else None)

    async def _give_up(self, error: str) -> str | None:
        """The campaign cannot proceed: FAILED, with the error as its reason."""
        reason = f"the engine cannot proceed: {error}"[:500]
        try:
            ended = await end_campaign(
                self.store,
                self.outbox,
                self.campaign_uuid,
                CampaignStatus.FAILED,
                reason,
                self.clock.now(),
            )
        except Exception:
            log.exception("marking the campaign FAILED failed; retrying")
            return None
        if ended is not None:
            log.error("campaign FAILED", reason=reason)
        return None  # the next step stops, or recovers the attempts still under way

    async def _sleep(self, due: datetime | None) -> None:
        now = self.clock.now()
        while self._timers and self._timers[0] <= now:
            heapq.heappop(self._timers)
        wait = self.settings.scheduler_tick_seconds
        for at in (due, self._timers[0] if self._timers else None):
            if at is not None:
                wait = min(wait, self.clock.wall_seconds((at - now).total_seconds()))
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
        self._wake.clear()

    async def step(self) -> datetime | str | None:
        campaign = await self.store.campaign(self.campaign_uuid)
        if campaign is not None:
            metrics().calls_in_progress.labels(campaign_uuid=self.campaign_uuid).set(
                campaign.get("stats", {}).get("IN_PROGRESS", 0)
            )
        if campaign is None:
            return "stop"
        if campaign["status"] in FINAL_CAMPAIGN_STATUSES:
            if campaign.get("stats", {}).get("IN_PROGRESS", 0):
                # Canceled or failed with attempts under way: they finish and are recorded;
                # an attempt whose worker dies is recovered like any other.
                await self._recover_lost(campaign, self.clock.now())
                return None
            return "stop"
        structlog.contextvars.bind_contextvars(firm_id=campaign["firm_id"])  # runner task only
        now = self.clock.now()
        window = window_of(campaign)
        if campaign["status"] == CampaignStatus.PENDING:
            start_at: datetime = campaign["start_at"]
            if now < start_at:
                return start_at
            await self._move(campaign, CampaignStatus.PENDING, CampaignStatus.PROCESSING, now)
            campaign["status"] = CampaignStatus.PROCESSING.value
        stats = campaign.get("stats", {})
        await self._recover_lost(campaign, now)
        due: datetime | None
        if window.contains(now):
            await self._dispatch(campaign, now)
            due = window.closes_at(now)
        elif window.has_ended(now):
            if stats.get("PENDING", 0) > 0:
                expired = await self.store.expire_pending(self.campaign_uuid, now)
                log.info("window closed: pending calls expired", expired=expired)
            due = None
        else:
            due = window.next_open(now)
            if due is not None and stats.get("PENDING", 0) > 0 and self._carried_for != due:
                moved = await self.store.carry_over(self.campaign_uuid, due, now)
                self._carried_for = due
                log.info("window closed: pending calls carried to the next day", moved=moved)
        if await self._maybe_complete(window.contains(now), now):
            return "stop"
        return due

    async def _maybe_complete(self, window_open: bool, now: datetime) -> bool:
        campaign = await self.store.campaign(self.campaign_uuid)
        if campaign is None or campaign["status"] != CampaignStatus.PROCESSING:
            return campaign is None or campaign["status"] in FINAL_CAMPAIGN_STATUSES
        stats = campaign.get("stats", {})
        if stats.get("PENDING", 0) or stats.get("IN_PROGRESS", 0):
            return False
        if campaign["allow_dynamic_call_appending"] and window_open:
            return False  # records may still be appended while the window is open
        done = await self._move(
            campaign,
            CampaignStatus.PROCESSING,
            CampaignStatus.COMPLETED,
            now,
            {"stats.PENDING": 0, "stats.IN_PROGRESS": 0},
        )
        if done:
            log.info("campaign completed", stats=stats)
        return done

    async def _move(
        self,
        campaign: Document,
        old: CampaignStatus,
        new: CampaignStatus,
        now: datetime,
        extra_filter: dict[str, Any] | None = None,
    ) -> bool:
        """Change the status and store its ``campaign.status_changed`` event with it."""
        entry = status_changed(campaign["firm_id"], self.campaign_uuid, new, now)

        async def announce(s: AsyncClientSession, _: object) -> None:
            await self.outbox.stage(s, [entry])

        done = await self.store.set_status(
            self.campaign_uuid, old, new, now, extra_filter, announce=announce
        )
        if done:
            await self.outbox.deliver([entry])
        return done

    # -- dispatch -------------------------------------------------------------------
    async def _dispatch(self, campaign: Document, now: datetime) -> None:
        free = campaign["speed"] - campaign.get("stats", {}).get("IN_PROGRESS", 0)
        lease = timedelta(seconds=self.settings.attempt_lease_seconds)
        while free > 0:
            chosen = await self._candidates(campaign, now, free)
            if not chosen:
                await self._look_for_stranded(campaign)
                return
            seqs = [c["seq"] for c in chosen]
            claimed, reserved, entries = await self._claim(campaign, seqs, now, lease)
            if reserved:  # claimed now, or no longer PENDING (deleted): done with them
                chosen_seqs = set(seqs)
                self._firsts = deque(d for d in self._firsts if d["seq"] not in chosen_seqs)
            else:
                # No slot after all (the counter is the authority): re-read and retry.
                fresh = await self.store.campaign(self.campaign_uuid)
                if fresh is None or fresh["status"] != CampaignStatus.PROCESSING:
                    return
                campaign = fresh
                free = campaign["speed"] - campaign.get("stats", {}).get("IN_PROGRESS", 0)
                continue
            if not claimed:
                continue
            await self.outbox.deliver(entries)
            metrics().calls_dispatched.labels(campaign_uuid=self.campaign_uuid).inc(len(claimed))
            free -= len(claimed)

    async def _claim(
        self, campaign: Document, seqs: list[int], now: datetime, lease: timedelta
    ) -> tuple[list[Document], bool, list[Entry]]:
        """Claim calls and store their dial commands in the same transaction."""
        entries: list[Entry] = []

        async def announce(s: AsyncClientSession, calls: list[Document]) -> None:
            entries[:] = self._dial_entries(campaign, calls, now)
            await self.outbox.stage(s, entries)

        claimed, reserved = await self.store.claim(campaign, seqs, now, lease, announce)
        return claimed, reserved, entries

    async def _candidates(self, campaign: Document, now: datetime, free: int) -> list[Document]:
        """Up to ``free`` due calls: retries and first attempts, by due time then order."""
        retries = await self.store.due_retries(self.campaign_uuid, now, free)
        next_seq = campaign.get("next_seq", 0)
        if self._cursor is None:
            # Start at the first PENDING call, not at 0: a scheduler taking over a big
            # campaign does not re-read the calls already done.
            lowest = await self.store.lowest_pending_seq(self.campaign_uuid)
            self._cursor = next_seq if lowest is None else lowest
        while len(self._firsts) < free and self._cursor < next_seq:
            block = await self.store.first_attempts(
                self.campaign_uuid, self._cursor, self._cursor + SCAN_BLOCK
            )
            self._cursor += SCAN_BLOCK
            known = {d["seq"] for d in self._firsts}
            self._firsts.extend(
                d
                for d in block
                if d["status"] == CallStatus.PENDING
                and d["attempts"] == 0
                and d["seq"] not in known
            )
        firsts = [d for d in self._firsts if d["next_attempt_at"] and d["next_attempt_at"] <= now]
        merged = sorted(retries + firsts[:free], key=lambda d: (d["next_attempt_at"], d["seq"]))
        return merged[:free]

    async def _look_for_stranded(self, campaign: Document) -> None:
        """Nothing is due, yet the counters hold more PENDING calls than the runner knows
        of (first attempts read, retries waiting): some were stored behind the scan
        without a ``campaign.appended`` event to rewind it (their append died). Read
        again from the first PENDING call."""
        loop_now = asyncio.get_running_loop().time()
        if loop_now < self._stranded_check_at:
            return
        self._stranded_check_at = loop_now + self._stranded_every
        pending = int(campaign.get("stats", {}).get(CallStatus.PENDING.value, 0))
        if pending <= len(self._firsts):
            return
        known = len(self._firsts) + await self.store.waiting_retries(self.campaign_uuid)
        if pending <= known:
            self._stranded_every = STRANDED_CHECK_SECONDS
            return
        lowest = await self.store.lowest_pending_seq(self.campaign_uuid)
        if lowest is None or self._cursor is None or lowest >= self._cursor:
            return
        log.warning(
            "PENDING calls behind the scan: reading them again",
            pending=pending,
            known=known,
            from_seq=lowest,
        )
        self.rewind(lowest)
        # Counts without calls (an append that died before storing any) look the same:
        # look less often each time, so they cost little until the window closes.
        self._stranded_every = min(self._stranded_every * 2, 3600.0)

    def _dial_entries(
        self, campaign: Document, calls: list[Document], now: datetime
    ) -> list[Entry]:
        """The dial command and the ``call.dispatched`` event of each claimed call."""
        firm = campaign["firm_id"]
        not_after = window_of(campaign).closes_at(now)
        entries: list[Entry] = []
        for c in calls:
            entries.append(
                Entry.work(
                    DIAL_KEY,
                    Envelope(
                        type=DIAL,
                        occurred_at=now,
                        firm_id=firm,
                        campaign_uuid=self.campaign_uuid,
                        data=DialCommand(
                            call_uuid=c["_id"],
                            seq=c["seq"],
                            campaign_uuid=self.campaign_uuid,
                            firm_id=firm,
                            attempt=c["attempts"],
                            phone_number=c["phone_number"],
                            language=c["language"],
                            gender_voice=c["gender_voice"],
                            agent_name=c["agent_name"],
                            variables=c.get("variables") or {},
                            not_after=not_after,
                        ).model_dump(mode="json"),
                    ),
                )
            )
            entries.append(
                Entry.event(
                    Envelope(
                        type="call.dispatched",
                        occurred_at=now,
                        firm_id=firm,
                        campaign_uuid=self.campaign_uuid,
                        data={"call_uuid": c["_id"], "attempt": c["attempts"]},
                    )
                )
            )
        return entries

    async def _recover_lost(self, campaign: Document, now: datetime) -> None:
        """Attempts whose worker never reported within the attempt lease: FAILED, retried."""
        loop_now = asyncio.get_running_loop().time()
        if loop_now - self._last_recovery < max(
            self.settings.scheduler_tick_seconds, RECOVERY_SECONDS
        ):
            return
        self._last_recovery = loop_now
        if not campaign.get("stats", {}).get("IN_PROGRESS", 0):
            return
        overdue = await self.store.overdue_attempts(self.campaign_uuid, now)
        # A long call that a live worker says it is placing is not lost: it is talking.
        alive = await self.store.alive(overdue, wall_now())
        lost = [c for c in overdue if c["_id"] not in alive]
        if lost:
            never_taken = await self.store.fence(lost, now)
            log.warning(
                "recovering attempts whose lease expired",
                calls=len(lost),
                never_taken=len(never_taken),
            )
            await self.settle(
                [
                    lost_attempt(c, self.campaign_uuid, now, taken=c["_id"] not in never_taken)
                    for c in lost
                ]
            )
