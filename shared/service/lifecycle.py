"""Campaign status changes outside the API's requests: the engine's and the operator's.

Every change stores its ``campaign.status_changed`` event in the transactional outbox
in the same transaction as the change.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from shared.domain.status import CampaignStatus
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Entry, Outbox
from shared.storage.engine import EngineStore
from shared.storage.mongo import Document

CAMPAIGN_STATUS_CHANGED = "campaign.status_changed"


def status_changed(
    firm_id: str,
    campaign_uuid: str,
    status: CampaignStatus,
    now: datetime,
    reason: str | None = None,
) -> Entry:
    return Entry.event(
        Envelope(
            type=CAMPAIGN_STATUS_CHANGED,
            occurred_at=now,
            firm_id=firm_id,
            campaign_uuid=campaign_uuid,
            data={"status": status.value, "reason": reason},
        )
    )


async def end_campaign(
    store: EngineStore,
    outbox: Outbox,
    campaign_uuid: str,
    status: CampaignStatus,
    reason: str,
    now: datetime,
    *,
    deliver: bool = True,
) -> Document | None:
    """End an active campaign as CANCELED or FAILED (see :meth:`EngineStore.finish`).

    Returns the campaign as it was before, or ``None`` when it was not active.
    ``deliver=False`` leaves the event to the outbox relay of a running API or scheduler
    (for a command-line tool without a broker connection).
    """
    entries: list[Entry] = []

    async def announce(s: AsyncClientSession, before: Document) -> None:
        entries[:] = [status_changed(before["firm_id"], campaign_uuid, status, now, reason)]
        await outbox.stage(s, entries)

    before = await store.finish(campaign_uuid, status, reason, now, announce)
    if before is not None and deliver:
        await outbox.deliver(entries)
    return before
