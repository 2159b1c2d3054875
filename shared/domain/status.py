"""Campaign and call statuses and the transitions between them."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"


class CallStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    NO_ANSWER = "NO_ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class Outcome(StrEnum):
    """What the telephony provider reports for one attempt."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO_ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"


FINAL_CAMPAIGN_STATUSES = frozenset(
    {CampaignStatus.COMPLETED, CampaignStatus.CANCELED, CampaignStatus.FAILED}
)
FINAL_CALL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.NO_ANSWER,
        CallStatus.BUSY,
        CallStatus.FAILED,
        CallStatus.CANCELED,
        CallStatus.EXPIRED,
    }
)
#: Outcomes after which another attempt is made while attempts remain.
RETRYABLE_OUTCOMES = frozenset({Outcome.NO_ANSWER, Outcome.BUSY, Outcome.FAILED})

CAMPAIGN_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.PENDING: frozenset(
        {
            CampaignStatus.PROCESSING,
            CampaignStatus.COMPLETED,
            CampaignStatus.CANCELED,
            CampaignStatus.FAILED,
        }
    ),
    CampaignStatus.PROCESSING: frozenset(
        {CampaignStatus.COMPLETED, CampaignStatus.CANCELED, CampaignStatus.FAILED}
    ),
    CampaignStatus.COMPLETED: frozenset(),
    CampaignStatus.CANCELED: frozenset(),
    CampaignStatus.FAILED: frozenset(),
}

CALL_TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    # PENDING -> PENDING is not a transition; a retry goes IN_PROGRESS -> PENDING.
    CallStatus.PENDING: frozenset(
        {CallStatus.IN_PROGRESS, CallStatus.CANCELED, CallStatus.EXPIRED}
    ),
    CallStatus.IN_PROGRESS: frozenset(
        {
            CallStatus.PENDING,
            CallStatus.COMPLETED,
            CallStatus.NO_ANSWER,
            CallStatus.BUSY,
            CallStatus.FAILED,
            CallStatus.CANCELED,
            CallStatus.EXPIRED,
        }
    ),
    **{status: frozenset() for status in FINAL_CALL_STATUSES},
}


class InvalidTransition(ValueError):
    """A status change that the rules refuse."""


def can_transition_campaign(old: CampaignStatus, new: CampaignStatus) -> bool:
    return new in CAMPAIGN_TRANSITIONS[old]


def can_transition_call(old: CallStatus, new: CallStatus) -> bool:
    return new in CALL_TRANSITIONS[old]


def ensure_call_transition(old: CallStatus, new: CallStatus) -> None:
    if not can_transition_call(old, new):
        raise InvalidTransition(f"call status {old} cannot become {new}")


def ensure_campaign_transition(old: CampaignStatus, new: CampaignStatus) -> None:
    if not can_transition_campaign(old, new):
        raise InvalidTransition(f"campaign status {old} cannot become {new}")
