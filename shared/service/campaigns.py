"""Campaign use cases: create, append, list, details, delete a call, delete a number.

Each operation checks tenancy, applies the domain rules with ``now`` from the clock,
writes through the repositories and stores its event(s) in the transactional outbox
in the same transaction as the change that commits it; after the commit the events
are published (a crash or a broker outage leaves them to the outbox relay). Failures
a client can cause raise the error tree of ``shared.domain.errors``; the API maps them
to HTTP in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.clock import Clock
from shared.domain.attempts import first_attempt_due, max_attempts
from shared.domain.dedup import dedup_day_unique, dedup_key
from shared.domain.errors import (
    Conflict,
    ErrorDetail,
    Forbidden,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from shared.domain.models import (
    AppendRecordsRequest,
    AppendRecordsResponse,
    Call,
    CallRecordIn,
    CallsPage,
    Campaign,
    CampaignDetails,
    CreateCampaignRequest,
    CreateCampaignResponse,
    DeletedCall,
    DeletedCalls,
    DetailsQuery,
    ListCallsQuery,
)
from shared.domain.phone import InvalidPhoneNumber, normalize_phone
from shared.domain.status import FINAL_CAMPAIGN_STATUSES, CallStatus, CampaignStatus
from shared.domain.window import CallingWindow, day_of
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import Entry, Outbox, Sender
from shared.storage.calls import CallRepository
from shared.storage.campaigns import CampaignRepository, empty_stats
from shared.storage.mongo import Database, Document, in_transaction

log = structlog.get_logger(__name__)

CAMPAIGN_CREATED = "campaign.created"
CAMPAIGN_APPENDED = "campaign.appended"
CALL_DELETED = "call.deleted"
CALL_RETRIES_CANCELLED = "call.retries_cancelled"


@dataclass(frozen=True)
class NewCalls:
    """Call documents ready to insert (``seq`` assigned later) and the in-request duplicates."""

    docs: list[Document]
    duplicates: int


def _canonical_uuid(value: str, what: str) -> str:
    """A path UUID in canonical form; a malformed one names nothing, hence 404."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"{what} not found: {value!r} is not a UUID") from None


class CampaignService:
    """The API's use cases. Construct once per process with its dependencies."""

    def __init__(
        self,
        db: Database,
        publisher: Sender,
        clock: Clock,
        *,
        default_firm_max_speed: int,
        publish_timeout: float = 10.0,
    ) -> None:
        self.campaigns = CampaignRepository(db)
        self.calls = CallRepository(db)
        self.db = db
        self.outbox = Outbox(db, publisher, publish_timeout=publish_timeout)
        self.clock = clock
        self.default_firm_max_speed = default_firm_max_speed

    # -- commands --------------------------------------------------------------------------
    async def create(self, firm_id: str, req: CreateCampaignRequest) -> CreateCampaignResponse:
        """Store the calls, then the campaign document (the commit point); publish."""
        now = self.clock.now()
        limit = await self.campaigns.firm_max_speed(firm_id)
        if limit is None:
            limit = self.default_firm_max_speed
        if req.speed > limit:
            raise ValidationFailed(
                "speed exceeds the firm's concurrency limit",
                [ErrorDetail(("body", "speed"), f"must be at most {limit}, the firm's limit")],
            )
        campaign_uuid = str(uuid.uuid4())
        window = CallingWindow(req.start_at, req.end_at, req.transfer_next_day)
        new = self._new_calls(
            campaign_uuid, req.call_records, window, req.retry, req.day_unique, now
        )
        for seq, doc in enumerate(new.docs):
            doc["seq"] = seq
        dropped = await self.calls.insert_many(new.docs)
        kept = [d["seq"] for i, d in enumerate(new.docs) if i not in dropped]
        await self.calls.inc_pages(campaign_uuid, kept)
        stats = empty_stats()
        stats["total"] = stats[CallStatus.PENDING.value] = len(kept)
        status = CampaignStatus.PENDING if now < req.start_at else CampaignStatus.PROCESSING
        campaign: Document = {
            "_id": campaign_uuid,
            "firm_id": firm_id,
            **req.model_dump(exclude={"call_records"}),
            "status": status.value,
            "status_reason": None,
            "created_at": now,
            "updated_at": now,
            "next_seq": len(new.docs),
            "stats": stats,
            "lease_owner": None,
            "lease_until": None,
        }
        added, duplicates = len(kept), new.duplicates + len(dropped)
        created = self._event(
            CAMPAIGN_CREATED,
            firm_id,
            campaign_uuid,
            now,
            {
                "status": status.value,
                "call_records_added": added,
                "duplicates_removed": duplicates,
                "seq_from": 0,
                "seq_to": len(new.docs),
            },
        )

        async def commit(s: AsyncClientSession) -> None:
            await self.campaigns.insert(campaign, session=s)
            await self.outbox.stage(s, [created])

        await in_transaction(self.db, commit)
        log.info("campaign created", campaign_uuid=campaign_uuid, firm_id=firm_id, calls=added)
        await self.outbox.deliver([created])
        return CreateCampaignResponse.model_validate(
            {
                **_campaign_view(campaign),
                "call_records_added": added,
                "duplicates_removed": duplicates,
            }
        )

    async def append(
        self, firm_id: str, campaign_uuid: str, req: AppendRecordsRequest
    ) -> AppendRecordsResponse:
        """Reserve a ``seq`` range with a status-conditional update, insert, fix counters."""
        now = self.clock.now()
        campaign = await self._owned(firm_id, campaign_uuid)
        campaign_uuid = campaign["_id"]
        window = CallingWindow(
            campaign["start_at"], campaign["end_at"], campaign["transfer_next_day"]
        )
        new = self._new_calls(
            campaign_uuid,
            req.call_records,
            window,
            campaign["retry"],
            campaign["day_unique"],
            now,
        )
        before, status = await self._reserve(campaign, len(new.docs), now)
        first = int(before["next_seq"])
        for offset, doc in enumerate(new.docs):
            doc["seq"] = first + offset
        dropped = await self.calls.insert_many(new.docs)
        kept = [d for i, d in enumerate(new.docs) if i not in dropped]
        duplicates = new.duplicates + len(dropped)
        appended = self._event(
            CAMPAIGN_APPENDED,
            firm_id,
            campaign_uuid,
            now,
            {
                "status": status.value,
                "call_records_added": len(kept),
                "duplicates_removed": duplicates,
                "seq_from": first,
                "seq_to": first + len(new.docs),
            },
        )

        async def commit(s: AsyncClientSession) -> None:
            if dropped:
                await self.campaigns.inc_stats(
                    campaign_uuid,
                    {"total": -len(dropped), CallStatus.PENDING.value: -len(dropped)},
                    session=s,
                )
            await self.calls.inc_pages(campaign_uuid, [d["seq"] for d in kept], session=s)
            await self.outbox.stage(s, [appended])

        await in_transaction(self.db, commit)
        log.info("records appended", campaign_uuid=campaign_uuid, calls=len(kept))
        await self.outbox.deliver([appended])
        return AppendRecordsResponse(
            campaign_uuid=campaign_uuid,
            call_records_added=len(kept),
            duplicates_removed=duplicates,
            call_uuids=[d["_id"] for d in kept],
            status=status,
        )

    async def delete_call(self, firm_id: str, campaign_uuid: str, call_uuid: str) -> DeletedCall:
        """PENDING: delete. IN_PROGRESS: cancel its retries, 409. Final: 409."""
        campaign = await self._owned(firm_id, campaign_uuid)
        campaign_uuid = campaign["_id"]
        call_uuid = _canonical_uuid(call_uuid, "call")
        for _ in range(10):
            if await self._delete_call_once(firm_id, campaign_uuid, call_uuid):
                return DeletedCall(deleted=call_uuid)
        raise Conflict(f"call {call_uuid} keeps changing state; try again")

    async def _delete_call_once(self, firm_id: str, campaign_uuid: str, call_uuid: str) -> bool:
        """One look at the call: True when deleted, False when it changed meanwhile."""
        now = self.clock.now()
        call = await self.calls.get(campaign_uuid, call_uuid)
        if call is None:
            raise NotFound(f"call {call_uuid} not found in this campaign")
        status = call["status"]
        entries: list[Entry] = []
        if status == CallStatus.PENDING.value:

            async def deleted_event(s: AsyncClientSession, doc: Document) -> None:
                entry = self._event(
                    CALL_DELETED,
                    firm_id,
                    campaign_uuid,
                    now,
                    {
                        "call_uuid": call_uuid,
                        "phone_number": doc["phone_number"],
                        "seq": doc["seq"],
                    },
                )
                entries[:] = [entry]
                await self.outbox.stage(s, entries)

            deleted = await self.calls.delete_pending(
                campaign_uuid, call["seq"], now, deleted_event
            )
            if deleted is None:
                return False  # claimed meanwhile: look again
            await self.outbox.deliver(entries)
            return True
        if status == CallStatus.IN_PROGRESS.value:
            cancelled = self._event(
                CALL_RETRIES_CANCELLED, firm_id, campaign_uuid, now, {"call_uuid": call_uuid}
            )

            async def cancelled_event(s: AsyncClientSession, _: object) -> None:
                entries[:] = [cancelled]
                await self.outbox.stage(s, entries)

            matched, changed = await self.calls.request_cancel(
                campaign_uuid, call["seq"], now, cancelled_event
            )
            if not matched:
                return False  # finished meanwhile: look again
            if changed:
                await self.outbox.deliver(entries)
            raise Conflict(
                f"call {call_uuid} is in progress and cannot be deleted; its retries are "
                "cancelled: no further attempt will be made after the current one"
            )
        raise Conflict(
            f"call {call_uuid} already finished with status {status}; nothing was changed"
        )

    async def delete_phone(
        self, firm_id: str, campaign_uuid: str, phone_number: str
    ) -> DeletedCalls:
        """Delete every PENDING call of the number, all or nothing (409 if one is dialing)."""
        campaign = await self._owned(firm_id, campaign_uuid)
        campaign_uuid = campaign["_id"]
        try:
            phone = normalize_phone(phone_number)
        except InvalidPhoneNumber as exc:
            raise ValidationFailed(
                "invalid phone number", [ErrorDetail(("path", "phone_number"), str(exc))]
            ) from None
        now = self.clock.now()
        entries: list[Entry] = []

        async def announce(s: AsyncClientSession, deleted: list[Document]) -> None:
            entries[:] = [
                self._event(
                    CALL_DELETED,
                    firm_id,
                    campaign_uuid,
                    now,
                    {"call_uuid": d["_id"], "phone_number": phone, "seq": d["seq"]},
                )
                for d in deleted
            ]
            await self.outbox.stage(s, entries)

        out = await self.calls.delete_phone(campaign_uuid, phone, now, announce)
        if not out.found:
            raise NotFound(f"no call with phone number {phone} in this campaign")
        if out.in_progress:
            raise Conflict(
                f"{len(out.in_progress)} call(s) of {phone} are in progress; nothing was deleted"
            )
        await self.outbox.deliver(entries)
        return DeletedCalls(deleted=[d["_id"] for d in out.deleted])

    # -- queries ---------------------------------------------------------------------------
    async def list_calls(
        self, firm_id: str, campaign_uuid: str, query: ListCallsQuery
    ) -> CallsPage:
        """One page of calls in the order they were added, read through the page index."""
        campaign = await self._owned(firm_id, campaign_uuid)
        total, docs = await self.calls.read_page(campaign["_id"], query.skip, query.per_page)
        return _page(query, total, docs)

    async def details(
        self, firm_id: str, campaign_uuid: str, query: DetailsQuery
    ) -> CampaignDetails:
        """The campaign with its live ``stats`` and one page of calls matching every filter."""
        campaign = await self._owned(firm_id, campaign_uuid)
        campaign_uuid = campaign["_id"]
        status = query.status.value if query.status else None
        call_uuid = str(query.call_uuid) if query.call_uuid else None
        if call_uuid is not None or query.phone_number is not None:
            # a uuid or a number selects a handful of calls: filter the rest here
            found = await self.calls.candidates(
                campaign_uuid, call_uuid=call_uuid, phone=query.phone_number
            )
            matching = [
                d for d in found if _matches(d, call_uuid, query.phone_number, status, query.date)
            ]
            total, docs = len(matching), matching[query.skip : query.skip + query.per_page]
        elif status is not None or query.date is not None:
            mongo_query: Document = {"campaign_uuid": campaign_uuid}
            if status is not None:
                mongo_query["status"] = status
            if query.date is not None:
                mongo_query["days"] = query.date
            if query.date is None and status is not None:
                # status only: the counter is exact and saves counting a long index range
                total = max(0, int(campaign.get("stats", {}).get(status, 0)))
            else:
                total = await self.calls.count(mongo_query)
            docs = (
                await self.calls.find(mongo_query, query.skip, query.per_page)
                if query.skip < total
                else []
            )
        else:
            total, docs = await self.calls.read_page(campaign_uuid, query.skip, query.per_page)
        return CampaignDetails(
            campaign=Campaign.model_validate(_campaign_view(campaign)),
            calls=_page(query, total, docs),
        )

    # -- helpers ---------------------------------------------------------------------------
    async def _owned(self, firm_id: str, campaign_uuid: str) -> Document:
        campaign_uuid = _canonical_uuid(campaign_uuid, "campaign")
        campaign = await self.campaigns.get(campaign_uuid)
        if campaign is None:
            raise NotFound(f"campaign {campaign_uuid} not found")
        if campaign["firm_id"] != firm_id:
            raise Forbidden("this campaign belongs to another firm")
        return campaign

    async def _reserve(
        self, campaign: Document, count: int, now: datetime
    ) -> tuple[Document, CampaignStatus]:
        """Reserve ``count`` seqs while the campaign's status still allows appending."""
        for _ in range(10):
            status = CampaignStatus(campaign["status"])
            if status in FINAL_CAMPAIGN_STATUSES:
                raise InvalidState(f"campaign is {status.value}: records can no longer be added")
            if status is CampaignStatus.PROCESSING and not campaign["allow_dynamic_call_appending"]:
                raise InvalidState(
                    "campaign is PROCESSING and allow_dynamic_call_appending is false"
                )
            new_status = (
                CampaignStatus.PENDING
                if status is CampaignStatus.PENDING and now < campaign["start_at"]
                else CampaignStatus.PROCESSING
            )
            allowed = {CampaignStatus.PENDING, CampaignStatus.PROCESSING}
            before = await self.campaigns.reserve_append(
                campaign["_id"],
                expected_status=status,
                allowed=allowed,
                new_status=new_status,
                count=count,
                now=now,
            )
            if before is not None:
                return before, new_status
            fresh = await self.campaigns.get(campaign["_id"])
            if fresh is None:
                raise NotFound(f"campaign {campaign['_id']} not found")
            campaign = fresh
        raise Conflict("campaign keeps changing status; try again")

    @staticmethod
    def _new_calls(
        campaign_uuid: str,
        records: Sequence[CallRecordIn],
        window: CallingWindow,
        retry: int,
        day_unique: str | None,
        now: datetime,
    ) -> NewCalls:
        """Apply day-unique dedup inside the batch and build the call documents."""
        day = day_of(now)
        keep: Sequence[int] = range(len(records))
        duplicates = 0
        if day_unique == "delete":
            result = dedup_day_unique([r.phone_number for r in records], day)
            keep, duplicates = result.kept, result.dropped
        due = first_attempt_due(now, window) or now
        base: Document = {
            "campaign_uuid": campaign_uuid,
            "status": CallStatus.PENDING.value,
            "attempts": 0,
            "max_attempts": max_attempts(retry),
            "next_attempt_at": due,
            "cancel_requested": False,
            "dispatch": None,
            "result": None,
            "created_at": now,
            "updated_at": now,
        }
        days = [day_of(due)]
        docs: list[Document] = []
        for i in keep:
            r = records[i]
            doc = {
                **base,
                "_id": str(uuid.uuid4()),
                "phone_number": r.phone_number,
                "language": r.language,
                "gender_voice": r.gender_voice,
                "agent_name": r.agent_name,
                "variables": r.variables,
                "days": list(days),
                "attempt_history": [],
            }
            if day_unique == "delete":
                doc["dedup_key"] = dedup_key(day, r.phone_number)
            docs.append(doc)
        return NewCalls(docs, duplicates)

    def _event(
        self, type_: str, firm_id: str, campaign_uuid: str, now: datetime, data: dict[str, Any]
    ) -> Entry:
        return Entry.event(
            Envelope(
                type=type_,
                occurred_at=now,
                firm_id=firm_id,
                campaign_uuid=campaign_uuid,
                data=data,
            )
        )


def _matches(
    doc: Document, call_uuid: str | None, phone: str | None, status: str | None, day: str | None
) -> bool:
    """Whether a call passes every given filter (AND)."""
    return (
        (call_uuid is None or doc["_id"] == call_uuid)
        and (phone is None or doc["phone_number"] == phone)
        and (status is None or doc["status"] == status)
        and (day is None or day in doc.get("days", []))
    )


def _campaign_view(doc: Document) -> Document:
    return {**doc, "uuid": doc["_id"], "stats": {**empty_stats(), **doc.get("stats", {})}}


def _page(query: ListCallsQuery, total: int, docs: list[Document]) -> CallsPage:
    return CallsPage(
        page=query.page,
        per_page=query.per_page,
        total=total,
        items=[Call.model_validate({**d, "uuid": d["_id"]}) for d in docs],
    )
