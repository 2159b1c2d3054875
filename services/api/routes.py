"""The endpoint table: the router and the OpenAPI document are both built from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from services.api import handlers
from shared.domain.models import (
    AppendRecordsRequest,
    AppendRecordsResponse,
    CallsPage,
    CampaignDetails,
    CreateCampaignRequest,
    CreateCampaignResponse,
    DeletedCall,
    DeletedCalls,
    DetailsQuery,
    Health,
    ListCallsQuery,
)

CAMPAIGN = ("campaign_uuid", "Campaign UUID.")
CALL = ("call_uuid", "UUID of the call to delete.")
PHONE = ("phone_number", "Phone number whose calls are removed (normalised like the input).")


@dataclass(frozen=True)
class Endpoint:
    """One operation: how it is routed and how the OpenAPI document describes it."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    operation_id: str
    summary: str
    description: str
    success: int
    response: type[BaseModel] | None
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_params: tuple[tuple[str, str], ...] = ()
    auth: bool = True


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/v1/call-campaign",
        handlers.create_campaign,
        "createCampaign",
        "Create campaign",
        "Create a campaign with its call records (0 to 100,000+ in one request).",
        201,
        CreateCampaignResponse,
        (401, 403, 413, 415, 422),
        body=CreateCampaignRequest,
    ),
    Endpoint(
        "POST",
        "/api/v1/call-campaign/{campaign_uuid}/call-records",
        handlers.append_records,
        "appendCallRecords",
        "Add phone numbers",
        "Add call records to a campaign. Its status becomes PROCESSING unless it has not yet "
        "reached start_at (then it stays PENDING).",
        200,
        AppendRecordsResponse,
        (400, 401, 403, 404, 413, 415, 422),
        body=AppendRecordsRequest,
        path_params=(CAMPAIGN,),
    ),
    Endpoint(
        "GET",
        "/api/v1/call-campaign/{campaign_uuid}/calls",
        handlers.list_calls,
        "listCalls",
        "List campaign calls",
        "Calls in the order they were added, one page at a time.",
        200,
        CallsPage,
        (401, 403, 404, 422),
        query=ListCallsQuery,
        path_params=(CAMPAIGN,),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/call-campaign/{campaign_uuid}/calls/{call_uuid}",
        handlers.delete_call,
        "deleteCall",
        "Delete call by UUID",
        "A PENDING call is removed. A call IN_PROGRESS answers 409 and its retries are "
        "cancelled (no attempt after the current one). A finished call answers 409.",
        200,
        DeletedCall,
        (401, 403, 404, 409),
        path_params=(CAMPAIGN, CALL),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/call-campaign/{campaign_uuid}/phone-numbers/{phone_number}",
        handlers.delete_phone_number,
        "deleteCallsByPhoneNumber",
        "Delete calls by phone number",
        "Remove every PENDING call of the number; if any of its calls is IN_PROGRESS, 409 "
        "and nothing is deleted. Finished calls stay as history.",
        200,
        DeletedCalls,
        (401, 403, 404, 409, 422),
        path_params=(CAMPAIGN, PHONE),
    ),
    Endpoint(
        "GET",
        "/api/v1/call-campaign/{campaign_uuid}",
        handlers.campaign_details,
        "getCampaignDetails",
        "Get campaign details",
        "The campaign with its live stats and one page of calls; the filters combine with AND.",
        200,
        CampaignDetails,
        (401, 403, 404, 422),
        query=DetailsQuery,
        path_params=(CAMPAIGN,),
    ),
    Endpoint(
        "GET",
        "/health",
        handlers.health,
        "health",
        "Health",
        "Whether MongoDB and RabbitMQ answer; 503 names what is down.",
        200,
        Health,
        (503,),
        auth=False,
    ),
    Endpoint(
        "GET",
        "/api/v1/openapi.json",
        handlers.openapi,
        "openapi",
        "OpenAPI document",
        "This document (OpenAPI 3.1).",
        200,
        None,
        auth=False,
    ),
    Endpoint(
        "GET",
        "/api/v1/docs",
        handlers.docs,
        "docs",
        "Documentation page",
        "Human-readable documentation of the API (HTML).",
        200,
        None,
        auth=False,
    ),
)


def add_routes(app: web.Application) -> None:
    for endpoint in ENDPOINTS:
        app.router.add_route(
            endpoint.method, endpoint.path, endpoint.handler, name=endpoint.operation_id
        )
