"""The OpenAPI 3.1 document, generated from the endpoint table and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from services.api import idempotency
from services.api.auth import HEADER
from services.api.routes import ENDPOINTS, Endpoint
from shared.domain.models import ErrorResponse, Health

#: The create request exactly as the public documentation shows it.
DOCUMENTED_EXAMPLE: dict[str, Any] = {
    "call_campaign_name": "January Outreach",
    "start_at": "2026-01-15T09:00:00.000Z",
    "end_at": "2026-01-15T18:00:00.000Z",
    "retry": 2,
    "speed": 5,
    "retry_interval": 30,
    "day_unique": "delete",
    "transfer_next_day": False,
    "allow_dynamic_call_appending": False,
    "call_records": [
        {
            "phone_number": "77012345678",
            "language": "RU",
            "gender_voice": "male",
            "agent_name": "sales_agent_v2",
            "variables": {
                "client_name": "John Doe",
                "debt_amount": 15000,
                "contract_type": "auto_loan",
                "foreign_id": "CRM-12345",
            },
        }
    ],
}

ERROR_TEXT = {
    400: "Campaign status forbids it: COMPLETED, FAILED or CANCELED, or PROCESSING while "
    "allow_dynamic_call_appending is false",
    401: "Missing or unknown API key",
    403: "API key inactive, or the campaign belongs to another firm",
    404: "Campaign, call or phone number not found (a malformed UUID in the path is a 404)",
    409: "Call in progress (its retries are cancelled) or already finished; by phone: a call "
    "of the number is in progress and nothing was deleted",
    413: "Request body larger than API_MAX_BODY_BYTES (64 MiB by default)",
    415: "Request body not declared as application/json",
    422: "Validation failed: every problem is listed with its JSON path",
    429: "Too many requests for this API key (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST); "
    "retry after Retry-After seconds",
    503: "MongoDB is not reachable; try again",
}
#: /health's 503 is its own report (what is down), not an error.
HEALTH_503 = "MongoDB or RabbitMQ is down: the body names which"
#: What the answers of the POST endpoints (with a body and an Idempotency-Key) also mean.
BODY_ERROR_TEXT = {
    408: "The request body did not arrive within API_READ_TIMEOUT_SECONDS",
    409: "A request with the same Idempotency-Key is still in progress (Retry-After: 1)",
    422: "Validation failed (every problem is listed with its JSON path), or the "
    "Idempotency-Key was already used with a different request",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
IDEMPOTENCY_PARAMETER = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "Makes retries safe: a retry of the same request with the same key (per "
    "firm, kept IDEMPOTENCY_TTL_SECONDS, 24 h by default) gets the first answer again, "
    "with the header Idempotent-Replayed: true, and the work is done once. The same key "
    "with a different request: 422. While the first is still running: 409.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_LENGTH,
        "pattern": idempotency.PATTERN,
    },
}
SECURITY_SCHEME = "ApiKey"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for e in ENDPOINTS:
        for model, mode in (
            (e.body, "validation"),
            (e.query, "validation"),
            (e.response, "serialization"),
        ):
            if model is not None and (model, mode) not in seen:
                seen.append((model, mode))  # type: ignore[arg-type]
    return seen


def _parameters(e: Endpoint, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, text in e.path_params:
        schema = (
            {"type": "string"} if name == "phone_number" else {"type": "string", "format": "uuid"}
        )
        params.append(
            {"name": name, "in": "path", "required": True, "description": text, "schema": schema}
        )
    if e.query is not None:
        props = schemas[e.query.__name__]["properties"]
        for name, prop in props.items():
            prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
            # an optional parameter is simply absent: drop the "or null" of the model field
            options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
            if len(options) == 1:
                prop = {**options[0], **prop}
            if prop.get("default", 0) is None:
                del prop["default"]
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": e.query.model_fields[name].description or name,
                    "schema": prop,
                }
            )
    return params


def _operation(e: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": e.operation_id,
        "summary": e.summary,
        "description": e.description,
    }
    params = _parameters(e, schemas)
    if e.body is not None:
        params.append(IDEMPOTENCY_PARAMETER)
    if params:
        op["parameters"] = params
    if e.auth:
        op["security"] = [{SECURITY_SCHEME: []}]
    if e.body is not None:
        content: dict[str, Any] = {"schema": _ref(e.body)}
        if e.operation_id == "createCampaign":
            content["example"] = DOCUMENTED_EXAMPLE
        op["requestBody"] = {"required": True, "content": {"application/json": content}}
    if e.response is not None:
        success: dict[str, Any] = {
            "description": "Success",
            "content": {"application/json": {"schema": _ref(e.response)}},
        }
    elif e.operation_id == "docs":
        success = {
            "description": "HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    else:
        success = {
            "description": "OpenAPI document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    responses: dict[str, Any] = {str(e.success): success}
    texts = {**ERROR_TEXT, **BODY_ERROR_TEXT} if e.body is not None else ERROR_TEXT
    for code in _error_codes(e):
        report = code == 503 and e.response is Health
        responses[str(code)] = {
            "description": HEALTH_503 if report else texts[code],
            "content": {"application/json": {"schema": _ref(Health if report else ErrorResponse)}},
        }
        if code == 429 or (code == 409 and e.body is not None):
            responses[str(code)]["headers"] = RETRY_AFTER
    op["responses"] = responses
    return op


def _error_codes(e: Endpoint) -> list[int]:
    """Every status the endpoint can answer besides success: its own errors, those of the
    key check (401, 403), rate limit (429) and database (503, when MongoDB is unreachable),
    and those of reading a body (408, 413, 415, 422) and of the Idempotency-Key (409)."""
    codes = set(e.errors)
    if e.auth:
        codes |= {401, 403, 429, 503}
    if e.body is not None:
        codes |= {408, 409, 413, 415, 422}
    return sorted(codes)


def build_openapi(max_body_bytes: int) -> dict[str, Any]:
    """The whole document (built once per process)."""
    _, top = models_json_schema(_models(), ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top["$defs"]
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dialer — Call Campaigns API",
            "version": "1.0.0",
            "description": (
                "Create outbound call campaigns, add phone numbers, follow and delete calls. "
                f"Every endpoint under /api/v1/call-campaign needs the `{HEADER}` header. "
                'Every error has the shape {"error": {"code", "message", "details": '
                f'[{{"loc", "msg"}}]}}. Request bodies are limited to {max_body_bytes} '
                "bytes (413 above). Each API key may send RATE_LIMIT_PER_SECOND requests per "
                "second on average, in bursts of RATE_LIMIT_BURST (429 with Retry-After above, "
                "counted per API process). The POST endpoints accept an Idempotency-Key header "
                "that makes retries safe."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": HEADER}
            },
        },
    }
