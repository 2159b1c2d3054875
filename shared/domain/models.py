"""The public contract as pydantic models: requests, responses, query parameters.

Requests are validated from the raw JSON bytes in strict mode (``"2"`` is not an
integer, ``"true"`` is not a boolean) and refuse unknown fields. Responses serialize
every datetime as ISO 8601 UTC with milliseconds and a ``Z``. The OpenAPI document is
generated from these same classes (``services.api.openapi``).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import pydantic_core
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from shared.domain.phone import InvalidPhoneNumber, normalize_phone
from shared.domain.status import CallStatus, CampaignStatus

MAX_VARIABLES_BYTES = 16 * 1024
_INT64 = (-(2**63), 2**63 - 1)


# -- field types -------------------------------------------------------------------------


def _to_utc_ms(value: datetime) -> datetime:
    """UTC, truncated to milliseconds (what MongoDB stores), so responses echo stored values."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "date and time outside the years 1 to 9999 once in UTC"
        ) from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def iso_z(value: datetime) -> str:
    """``2026-01-15T09:00:00.000Z``: the format of the documented example."""
    utc = value.astimezone(UTC)
    # %Y does not pad years below 1000 on every platform; ISO 8601 wants four digits.
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise PydanticCustomError(
            "phone_number", "invalid phone number: {reason}", {"reason": str(exc)}
        ) from None


def _check_json_value(value: Any, depth: int = 0) -> None:
    """Refuse what JSON allows but BSON cannot store (huge integers, NUL in keys)."""
    if depth > 32:
        raise PydanticCustomError("variables", "variables are nested too deeply (max 32)")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise PydanticCustomError("variables", "integer out of the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("variables", "number out of range")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key or key.startswith("$"):
                raise PydanticCustomError(
                    "variables", "variable names must not contain NUL or start with '$'"
                )
            _check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, depth + 1)


def _variables(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return value
    _check_json_value(value)
    if len(pydantic_core.to_json(value)) > MAX_VARIABLES_BYTES:
        raise PydanticCustomError("variables", "variables exceed 16 KiB when serialized")
    return value


UtcDatetimeIn = Annotated[AwareDatetime, AfterValidator(_to_utc_ms)]
UtcDatetime = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "examples": ["2026-01-15T09:00:00.000Z"]}
    ),
]
PhoneNumber = Annotated[
    str,
    AfterValidator(_phone),
    WithJsonSchema(
        {
            "type": "string",
            "description": "digits with an optional leading '+'; "
            "spaces, dashes and brackets ignored; stored in E.164",
            "examples": ["77012345678", "+7 (701) 234-56-78"],
        }
    ),
]
Language = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,8}$"), AfterValidator(str.upper)]
GenderVoice = Literal["male", "female"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AgentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Variables = Annotated[dict[str, Any], AfterValidator(_variables)]

_REQUEST = ConfigDict(strict=True, extra="forbid")
_RESPONSE = ConfigDict(extra="ignore")


# -- requests ----------------------------------------------------------------------------


class CallRecordIn(BaseModel):
    """One number to call, with the conversation settings for it."""

    model_config = _REQUEST

    phone_number: PhoneNumber
    language: Language = Field(description="2-8 letters, stored upper case")
    gender_voice: GenderVoice
    agent_name: AgentName
    variables: Variables = Field(
        default_factory=dict, description="any JSON values, at most 16 KiB serialized"
    )


class CreateCampaignRequest(BaseModel):
    """Body of ``POST /api/v1/call-campaign``."""

    model_config = _REQUEST

    call_campaign_name: Name
    start_at: UtcDatetimeIn = Field(description="timezone-aware; stored as UTC")
    end_at: UtcDatetimeIn = Field(description="timezone-aware; after start_at")
    retry: int = Field(0, ge=0, le=10, description="retries of an unanswered call")
    speed: int = Field(1, ge=1, description="calls in progress at once; ≤ the firm's limit")
    retry_interval: int = Field(30, ge=1, le=10080, description="minutes between attempts")
    day_unique: Literal["delete"] | None = Field(
        None, description='"delete": one call per phone number per UTC day'
    )
    transfer_next_day: bool = False
    allow_dynamic_call_appending: bool = False
    call_records: list[CallRecordIn] = Field(description="0 or more records (100,000 accepted)")

    @field_validator("end_at")
    @classmethod
    def _end_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start_at")
        if start is not None and value <= start:
            raise PydanticCustomError("end_before_start", "end_at must be after start_at")
        return value


class AppendRecordsRequest(BaseModel):
    """Body of ``POST /api/v1/call-campaign/{campaign_uuid}/call-records``."""

    model_config = _REQUEST

    call_records: list[CallRecordIn]


def _utc_day(value: Any) -> Any:
    """``date`` filter: a date or a datetime (naive means UTC) → its UTC day."""
    if not isinstance(value, str):
        return value
    try:
        if "T" not in value and " " not in value:
            return date.fromisoformat(value).isoformat()
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "date", "date must be an ISO 8601 date or datetime (2026-01-15 or 2026-01-15T09:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).date().isoformat()


UtcDay = Annotated[
    str,
    BeforeValidator(_utc_day),
    WithJsonSchema(
        {
            "type": "string",
            "description": "ISO 8601 date or datetime; matched against the UTC day",
            "examples": ["2026-01-15", "2026-01-15T09:00:00Z"],
        }
    ),
]


class ListCallsQuery(BaseModel):
    """Query of ``GET .../calls``: out-of-range values are refused, not clamped."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, description="page number, from 1")
    per_page: int = Field(20, ge=1, le=100, description="items per page, 1-100")

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.per_page


class DetailsQuery(ListCallsQuery):
    """Query of ``GET /api/v1/call-campaign/{campaign_uuid}``: filters combine with AND."""

    date: UtcDay | None = Field(None, description="calls scheduled or attempted that UTC day")
    status: CallStatus | None = Field(None, description="a call status")
    call_uuid: UUID | None = Field(None, description="one call")
    phone_number: PhoneNumber | None = Field(None, description="normalised like the input")


# -- responses ---------------------------------------------------------------------------


class CampaignStats(BaseModel):
    """Live call counts: the total and one counter per call status."""

    model_config = _RESPONSE

    total: int = 0
    PENDING: int = 0
    IN_PROGRESS: int = 0
    COMPLETED: int = 0
    NO_ANSWER: int = 0
    BUSY: int = 0
    FAILED: int = 0
    CANCELED: int = 0
    EXPIRED: int = 0


class Campaign(BaseModel):
    """A campaign as the API returns it (everything of the request but the records)."""

    model_config = _RESPONSE

    uuid: str
    call_campaign_name: str
    start_at: UtcDatetime
    end_at: UtcDatetime
    retry: int
    speed: int
    retry_interval: int
    day_unique: Literal["delete"] | None
    transfer_next_day: bool
    allow_dynamic_call_appending: bool
    status: CampaignStatus
    status_reason: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    stats: CampaignStats


class CreateCampaignResponse(Campaign):
    """Response 201 of the create endpoint."""

    call_records_added: int
    duplicates_removed: int


class AppendRecordsResponse(BaseModel):
    """Response 200 of the append endpoint."""

    campaign_uuid: str
    call_records_added: int
    duplicates_removed: int
    call_uuids: list[str]
    status: CampaignStatus


class AttemptResult(BaseModel):
    """Outcome of one attempt, with what the telephony provider returned."""

    model_config = ConfigDict(extra="allow")

    outcome: str
    started_at: UtcDatetime | None = None
    answered_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    duration_seconds: float | None = None
    provider: dict[str, Any] = Field(default_factory=dict)


class AttemptHistoryEntry(AttemptResult):
    """One finished attempt."""

    attempt: int


class Call(BaseModel):
    """A call of a campaign."""

    model_config = _RESPONSE

    uuid: str
    campaign_uuid: str
    phone_number: str
    language: str
    gender_voice: str
    agent_name: str
    variables: dict[str, Any]
    status: CallStatus
    attempts: int
    max_attempts: int
    next_attempt_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    result: AttemptResult | None = None
    attempt_history: list[AttemptHistoryEntry] = Field(default_factory=list)
    cancel_requested: bool = Field(
        False, description="a delete asked that no further attempt be made"
    )


class CallsPage(BaseModel):
    """One page of calls, in the order they were added."""

    page: int
    per_page: int
    total: int
    items: list[Call]


class CampaignDetails(BaseModel):
    """Response of the details endpoint: the campaign and one filtered page of its calls."""

    campaign: Campaign
    calls: CallsPage


class DeletedCall(BaseModel):
    """Response 200 of delete-by-uuid."""

    deleted: str


class DeletedCalls(BaseModel):
    """Response 200 of delete-by-phone-number: the removed call uuids."""

    deleted: list[str]


class ErrorDetailOut(BaseModel):
    """One problem: its JSON path and what is wrong."""

    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """A stable ``code``, a human ``message`` and the per-field ``details``."""

    code: str
    message: str
    details: list[ErrorDetailOut] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every error answer has this shape."""

    error: ErrorBody


class Health(BaseModel):
    """``GET /health``: each dependency ``ok`` or ``down``."""

    status: Literal["ok", "unavailable"]
    mongodb: Literal["ok", "down"]
    rabbitmq: Literal["ok", "down"]
