"""Every status pair for calls and campaigns, against a table written out here."""

from __future__ import annotations

import itertools

import pytest

from shared.domain.status import (
    FINAL_CALL_STATUSES,
    FINAL_CAMPAIGN_STATUSES,
    RETRYABLE_OUTCOMES,
    CallStatus,
    CampaignStatus,
    InvalidTransition,
    Outcome,
    can_transition_call,
    can_transition_campaign,
    ensure_call_transition,
    ensure_campaign_transition,
)

# Written from the contract, independently of shared/domain/status.py.
# A campaign may also complete straight from PENDING: a campaign whose (non-repeating)
# window passes with nothing to dial never needed to process.
ALLOWED_CAMPAIGN = {
    ("PENDING", "PROCESSING"),
    ("PENDING", "COMPLETED"),
    ("PENDING", "CANCELED"),
    ("PENDING", "FAILED"),
    ("PROCESSING", "COMPLETED"),
    ("PROCESSING", "CANCELED"),
    ("PROCESSING", "FAILED"),
}
ALLOWED_CALL = {
    # dispatched; campaign canceled; window closed without transfer
    ("PENDING", "IN_PROGRESS"),
    ("PENDING", "CANCELED"),
    ("PENDING", "EXPIRED"),
    # the attempt ended: retry later, or one final status
    ("IN_PROGRESS", "PENDING"),
    ("IN_PROGRESS", "COMPLETED"),
    ("IN_PROGRESS", "NO_ANSWER"),
    ("IN_PROGRESS", "BUSY"),
    ("IN_PROGRESS", "FAILED"),
    ("IN_PROGRESS", "CANCELED"),
    ("IN_PROGRESS", "EXPIRED"),
}
CAMPAIGN_NAMES = ["PENDING", "PROCESSING", "COMPLETED", "CANCELED", "FAILED"]
CALL_NAMES = [
    "PENDING",
    "IN_PROGRESS",
    "COMPLETED",
    "NO_ANSWER",
    "BUSY",
    "FAILED",
    "CANCELED",
    "EXPIRED",
]


def test_status_values_are_the_contract_names() -> None:
    assert sorted(CampaignStatus) == sorted(CAMPAIGN_NAMES)
    assert sorted(CallStatus) == sorted(CALL_NAMES)
    assert sorted(Outcome) == sorted(["ANSWERED", "NO_ANSWER", "BUSY", "FAILED"])


def test_final_sets() -> None:
    final_campaign = {"COMPLETED", "CANCELED", "FAILED"}
    final_call = {"COMPLETED", "NO_ANSWER", "BUSY", "FAILED", "CANCELED", "EXPIRED"}
    retryable = {"NO_ANSWER", "BUSY", "FAILED"}
    assert final_campaign == FINAL_CAMPAIGN_STATUSES
    assert final_call == FINAL_CALL_STATUSES
    assert retryable == RETRYABLE_OUTCOMES


@pytest.mark.parametrize(("old", "new"), list(itertools.product(CAMPAIGN_NAMES, repeat=2)))
def test_campaign_transition(old: str, new: str) -> None:
    allowed = (old, new) in ALLOWED_CAMPAIGN
    assert can_transition_campaign(CampaignStatus(old), CampaignStatus(new)) is allowed
    if allowed:
        ensure_campaign_transition(CampaignStatus(old), CampaignStatus(new))
    else:
        with pytest.raises(InvalidTransition):
            ensure_campaign_transition(CampaignStatus(old), CampaignStatus(new))


@pytest.mark.parametrize(("old", "new"), list(itertools.product(CALL_NAMES, repeat=2)))
def test_call_transition(old: str, new: str) -> None:
    allowed = (old, new) in ALLOWED_CALL
    assert can_transition_call(CallStatus(old), CallStatus(new)) is allowed
    if allowed:
        ensure_call_transition(CallStatus(old), CallStatus(new))
    else:
        with pytest.raises(InvalidTransition):
            ensure_call_transition(CallStatus(old), CallStatus(new))


@pytest.mark.parametrize("status", sorted(FINAL_CALL_STATUSES))
def test_final_call_statuses_go_nowhere(status: CallStatus) -> None:
    assert not any(can_transition_call(status, new) for new in CallStatus)


@pytest.mark.parametrize("status", sorted(FINAL_CAMPAIGN_STATUSES))
def test_final_campaign_statuses_go_nowhere(status: CampaignStatus) -> None:
    assert not any(can_transition_campaign(status, new) for new in CampaignStatus)


def test_invalid_transition_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)
