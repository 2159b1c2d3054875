"""The contract models: the documented example, strictness, every error with its path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.api.openapi import DOCUMENTED_EXAMPLE
from shared.domain.models import (
    AppendRecordsRequest,
    Campaign,
    CampaignStats,
    CreateCampaignRequest,
    DetailsQuery,
    ListCallsQuery,
    iso_z,
)


def body(**changes: Any) -> bytes:
    data = json.loads(json.dumps(DOCUMENTED_EXAMPLE))
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data).encode()


def record(**changes: Any) -> dict[str, Any]:
    rec = dict(DOCUMENTED_EXAMPLE["call_records"][0])
    rec.update(changes)
    return rec


def locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


def test_documented_example_validates_verbatim() -> None:
    req = CreateCampaignRequest.model_validate_json(json.dumps(DOCUMENTED_EXAMPLE))
    assert req.start_at == datetime(2026, 1, 15, 9, tzinfo=UTC)
    assert req.day_unique == "delete"
    rec = req.call_records[0]
    assert rec.phone_number == "+77012345678"
    assert rec.language == "RU"
    assert rec.variables["debt_amount"] == 15000


def test_defaults() -> None:
    req = CreateCampaignRequest.model_validate_json(
        body(
            retry=...,
            speed=...,
            retry_interval=...,
            day_unique=...,
            transfer_next_day=...,
            allow_dynamic_call_appending=...,
        )
    )
    assert (req.retry, req.speed, req.retry_interval, req.day_unique) == (0, 1, 30, None)
    assert not req.transfer_next_day and not req.allow_dynamic_call_appending


def test_offsets_are_stored_as_utc_milliseconds() -> None:
    req = CreateCampaignRequest.model_validate_json(
        body(start_at="2026-01-15T12:00:00.123456+03:00", end_at="2026-01-15T18:00:00Z")
    )
    assert req.start_at == datetime(2026, 1, 15, 9, 0, 0, 123000, tzinfo=UTC)
    assert req.start_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"call_campaign_name": "   "}, ("call_campaign_name",)),
        ({"call_campaign_name": "x" * 201}, ("call_campaign_name",)),
        ({"start_at": "2026-01-15T09:00:00"}, ("start_at",)),
        ({"end_at": "2026-01-15T08:00:00Z"}, ("end_at",)),
        ({"retry": 11}, ("retry",)),
        ({"retry": "2"}, ("retry",)),
        ({"retry": 2.0}, ("retry",)),
        ({"retry": True}, ("retry",)),
        ({"speed": 0}, ("speed",)),
        ({"retry_interval": 0}, ("retry_interval",)),
        ({"retry_interval": 10081}, ("retry_interval",)),
        ({"day_unique": "keep"}, ("day_unique",)),
        ({"transfer_next_day": "false"}, ("transfer_next_day",)),
        ({"call_records": ...}, ("call_records",)),
        ({"call_records": {}}, ("call_records",)),
        ({"colour": "red"}, ("colour",)),
    ],
)
def test_invalid_field_is_named(changes: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        CreateCampaignRequest.model_validate_json(body(**changes))
    assert loc in locs(exc)


@pytest.mark.parametrize(
    ("rec", "field"),
    [
        (record(phone_number="12"), "phone_number"),
        (record(phone_number="+1 555 abc"), "phone_number"),
        (record(phone_number=77012345678), "phone_number"),
        (record(language="R"), "language"),
        (record(language="RU1"), "language"),
        (record(gender_voice="robot"), "gender_voice"),
        (record(agent_name=""), "agent_name"),
        (record(agent_name="a" * 101), "agent_name"),
        (record(variables=[]), "variables"),
        (record(variables={"big": "x" * 17000}), "variables"),
        (record(variables={"n": 2**70}), "variables"),
        (record(variables={"$where": 1}), "variables"),
        (record(extra=1), "extra"),
    ],
)
def test_record_errors_carry_the_index(rec: dict[str, Any], field: str) -> None:
    records = [record(), record(), record(), rec]
    with pytest.raises(ValidationError) as exc:
        AppendRecordsRequest.model_validate_json(json.dumps({"call_records": records}))
    assert ("call_records", 3, field) in locs(exc)
    assert all(loc[1] == 3 for loc in locs(exc))


def test_phone_and_language_are_normalised() -> None:
    req = AppendRecordsRequest.model_validate_json(
        json.dumps({"call_records": [record(phone_number="+7 (701) 234-56-78", language="kk")]})
    )
    assert req.call_records[0].phone_number == "+77012345678"
    assert req.call_records[0].language == "KK"


def test_every_problem_is_listed() -> None:
    records = [record(phone_number="1"), record(language="1"), record(gender_voice="x")]
    with pytest.raises(ValidationError) as exc:
        AppendRecordsRequest.model_validate_json(json.dumps({"call_records": records}))
    assert set(locs(exc)) == {
        ("call_records", 0, "phone_number"),
        ("call_records", 1, "language"),
        ("call_records", 2, "gender_voice"),
    }


def test_list_query_bounds_are_refused_not_clamped() -> None:
    assert ListCallsQuery.model_validate({}).per_page == 20
    q = ListCallsQuery.model_validate({"page": "3", "per_page": "100"})
    assert (q.page, q.per_page, q.skip) == (3, 100, 200)
    for bad in (
        {"page": "0"},
        {"per_page": "101"},
        {"per_page": "0"},
        {"page": "x"},
        {"pagee": "1"},
    ):
        with pytest.raises(ValidationError):
            ListCallsQuery.model_validate(bad)


@pytest.mark.parametrize(
    ("raw", "day"),
    [
        ("2026-01-15", "2026-01-15"),
        ("2026-01-15T23:30:00Z", "2026-01-15"),
        ("2026-01-15T01:00:00+03:00", "2026-01-14"),
        ("2026-01-15T10:00:00", "2026-01-15"),
    ],
)
def test_date_filter_is_a_utc_day(raw: str, day: str) -> None:
    assert DetailsQuery.model_validate({"date": raw}).date == day


def test_details_query_validates_filters() -> None:
    q = DetailsQuery.model_validate({"status": "IN_PROGRESS", "phone_number": "77012345678"})
    assert q.status == "IN_PROGRESS" and q.phone_number == "+77012345678"
    for bad in (
        {"status": "DONE"},
        {"phone_number": "abc"},
        {"call_uuid": "x"},
        {"date": "yesterday"},
    ):
        with pytest.raises(ValidationError):
            DetailsQuery.model_validate(bad)


def test_datetimes_serialize_as_iso_z_with_milliseconds() -> None:
    at = datetime(2026, 1, 15, 9, 0, 0, 123456, tzinfo=UTC)
    assert iso_z(at) == "2026-01-15T09:00:00.123Z"
    campaign = Campaign(
        uuid="u",
        call_campaign_name="n",
        start_at=at,
        end_at=at,
        retry=0,
        speed=1,
        retry_interval=30,
        day_unique=None,
        transfer_next_day=False,
        allow_dynamic_call_appending=False,
        status="PENDING",
        created_at=at,
        updated_at=at,
        stats=CampaignStats(),
    )
    dumped = json.loads(campaign.model_dump_json())
    assert dumped["start_at"] == "2026-01-15T09:00:00.123Z"
    assert dumped["stats"]["IN_PROGRESS"] == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_any_json_object_is_either_a_request_or_a_validation_error(data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    try:
        CreateCampaignRequest.model_validate_json(raw)
    except ValidationError as exc:
        assert exc.errors()
