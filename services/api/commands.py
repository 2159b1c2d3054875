"""Commands over AMQP: the HTTP API's operations for trusted integrations.

A command is an :class:`Envelope` published to the events exchange with routing key
``command.<name>`` (``create_campaign``, ``append_records``, ``delete_call``,
``delete_phone``); ``firm_id`` in the envelope says whose campaign it is (the
broker's credentials are the trust boundary). The API process consumes them from the
``commands`` queue, runs the same validation and the same service call as HTTP, and
answers with the HTTP status and body: a reply message to ``reply_to`` (with the
request's ``correlation_id``) when the command asks for one, else an error event
``command.rejected.<campaign_uuid>`` when it failed.

Creates and appends are idempotent by the command's ``message_id``: a redelivered (or
republished) command gets the first answer again and changes nothing (the same store
as the HTTP ``Idempotency-Key``, keyed ``amqp:<message_id>`` per firm).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel, ValidationError

from services.api import errors
from shared.domain.errors import DialerError, ValidationFailed
from shared.domain.models import AppendRecordsRequest, CreateCampaignRequest
from shared.messaging.connection import Publisher
from shared.messaging.envelope import Envelope
from shared.service.campaigns import CampaignService
from shared.storage.idempotency import (
    Claimed,
    IdempotencyStore,
    InProgress,
    Mismatch,
    Replay,
    fingerprint,
)

log = structlog.get_logger(__name__)

PREFIX = "command."
Reply = tuple[int, Any]
M = TypeVar("M", bound=BaseModel)
#: Commands that would change something twice if run twice.
ONCE = {"create_campaign", "append_records"}


class CommandInProgress(Exception):
    """A copy of this command is being run right now: try again later (requeued)."""


class CommandHandler:
    def __init__(
        self,
        service: CampaignService,
        publisher: Publisher,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.idempotency = idempotency
        self.commands: dict[str, Callable[[str, dict[str, Any]], Awaitable[Reply]]] = {
            "create_campaign": self._create,
            "append_records": self._append,
            "delete_call": self._delete_call,
            "delete_phone": self._delete_phone,
        }

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        envelope: Envelope | None = None
        try:
            envelope = Envelope.from_body(message.body)
            status, body = await self.execute(envelope)
        except (ValueError, ValidationError) as exc:
            status, body = _error(ValidationFailed(f"not a command envelope: {exc}"))
        name = envelope.type.removeprefix(PREFIX) if envelope else "unknown"
        log.info("command", command=name, status=status)
        if message.reply_to:
            await self.publisher.channel.default_exchange.publish(
                aio_pika.Message(
                    body=json.dumps({"status": status, "body": body}).encode(),
                    content_type="application/json",
                    correlation_id=message.correlation_id
                    or (envelope.message_id if envelope else None),
                    type=f"{PREFIX}reply",
                ),
                routing_key=message.reply_to,
            )
        elif status >= 400:
            campaign_uuid = (envelope.campaign_uuid if envelope else None) or "none"
            await self.publisher.event(
                Envelope(
                    type="command.rejected",
                    occurred_at=datetime.now(UTC),
                    firm_id=envelope.firm_id if envelope else None,
                    campaign_uuid=campaign_uuid,
                    data={
                        "command": name,
                        "command_message_id": envelope.message_id if envelope else None,
                        "status": status,
                        "error": body.get("error"),
                    },
                )
            )

    async def execute(self, envelope: Envelope) -> Reply:
        """The HTTP status and body the same request would get from the API."""
        try:
            run = self.commands.get(envelope.type.removeprefix(PREFIX))
            if run is None or not envelope.type.startswith(PREFIX):
                known = ", ".join(PREFIX + name for name in self.commands)
                raise ValidationFailed(f"unknown command {envelope.type!r}; known: {known}")
            if not envelope.firm_id:
                raise ValidationFailed("a command needs firm_id")
            name = envelope.type.removeprefix(PREFIX)
            if self.idempotency is None or name not in ONCE:
                return await run(envelope.firm_id, envelope.data)
            return await self._once(envelope, envelope.firm_id, run)
        except ValidationError as exc:
            return _error(errors.from_validation_error(exc, "data"))
        except DialerError as exc:
            return _error(exc)

    async def _once(
        self,
        envelope: Envelope,
        firm: str,
        run: Callable[[str, dict[str, Any]], Awaitable[Reply]],
    ) -> Reply:
        """Run a command at most once per ``message_id``; a copy gets the first answer."""
        assert self.idempotency is not None
        body = json.dumps(envelope.data, sort_keys=True, separators=(",", ":"))
        begun = await self.idempotency.begin(
            firm, f"amqp:{envelope.message_id}", fingerprint(envelope.type, body)
        )
        if isinstance(begun, Replay):
            log.info("command already run: first answer replayed")
            return begun.status, json.loads(begun.body)
        if isinstance(begun, InProgress):
            raise CommandInProgress(f"command {envelope.message_id} is being run")
        if isinstance(begun, Mismatch):
            raise ValidationFailed("message_id already used by a different command")
        assert isinstance(begun, Claimed)
        try:
            status, answer = await run(firm, envelope.data)
        except BaseException:
            await self.idempotency.release(begun)  # nothing was stored: a copy may run
            raise
        await self.idempotency.complete(begun, status, json.dumps(answer).encode())
        return status, answer

    async def _create(self, firm: str, data: dict[str, Any]) -> Reply:
        result = await self.service.create(firm, _parse(CreateCampaignRequest, data))
        return 201, _dump(result)

    async def _append(self, firm: str, data: dict[str, Any]) -> Reply:
        rest = {k: v for k, v in data.items() if k != "campaign_uuid"}
        body = _parse(AppendRecordsRequest, rest)
        return 200, _dump(await self.service.append(firm, _field(data, "campaign_uuid"), body))

    async def _delete_call(self, firm: str, data: dict[str, Any]) -> Reply:
        result = await self.service.delete_call(
            firm, _field(data, "campaign_uuid"), _field(data, "call_uuid")
        )
        return 200, _dump(result)

    async def _delete_phone(self, firm: str, data: dict[str, Any]) -> Reply:
        result = await self.service.delete_phone(
            firm, _field(data, "campaign_uuid"), _field(data, "phone_number")
        )
        return 200, _dump(result)


def _parse(model: type[M], data: dict[str, Any]) -> M:
    # As JSON, like an HTTP body: the models are strict, and JSON is what they read.
    return model.model_validate_json(json.dumps(data))


def _field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} is required (a string)")
    return value


def _dump(model: BaseModel) -> Any:
    return json.loads(model.model_dump_json())


def _error(exc: DialerError) -> Reply:
    response = errors.from_dialer_error(exc)
    assert isinstance(response.body, bytes)
    return response.status, json.loads(response.body)
