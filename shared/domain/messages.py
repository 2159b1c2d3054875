"""Payloads of the internal work messages between schedulers and dialer workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.status import Outcome

DIAL = "call.dial"
ATTEMPT_RESULT = "call.attempt_result"


def claim_key(call_uuid: str, attempt: int) -> str:
    """The key of the claim a worker stores before placing attempt ``attempt`` of a call."""
    return f"{call_uuid}:{attempt}"


class DialCommand(BaseModel):
    """Place attempt number ``attempt`` of call ``call_uuid``; never twice."""

    model_config = ConfigDict(extra="forbid")

    call_uuid: str
    campaign_uuid: str
    #: The call's insertion number in its campaign: with the uuid, its storage key.
    seq: int = Field(ge=0)
    firm_id: str
    attempt: int = Field(ge=1)
    phone_number: str
    language: str
    gender_voice: str
    agent_name: str
    variables: dict[str, Any] = Field(default_factory=dict)
    #: The calling window closes then: a command that arrives later is not dialed.
    not_after: datetime | None = None


class AttemptResult(BaseModel):
    """What happened to one attempt, as the dialer worker reports it."""

    model_config = ConfigDict(extra="forbid")

    call_uuid: str
    campaign_uuid: str
    seq: int = Field(ge=0)
    attempt: int = Field(ge=1)
    outcome: Outcome
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime
    provider: dict[str, Any] = Field(default_factory=dict)
    #: False when the worker did not place the call (the window closed before it could):
    #: the attempt does not count and the call waits for the next window, or expires.
    dialed: bool = True

    @property
    def duration_seconds(self) -> float:
        return round((self.ended_at - self.started_at).total_seconds(), 3)

    def as_record(self) -> dict[str, Any]:
        """The stored shape of ``result`` / an ``attempt_history`` entry."""
        return {
            "attempt": self.attempt,
            "outcome": self.outcome.value,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "duration_seconds": self.duration_seconds,
            "provider": self.provider,
        }
