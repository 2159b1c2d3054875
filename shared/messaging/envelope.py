"""The JSON envelope of every message: schema version, id, firm, occurrence time."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


class Envelope(BaseModel):
    schema_version: int = SCHEMA_VERSION
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: str
    occurred_at: datetime
    firm_id: str | None = None
    campaign_uuid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_message(self, **properties: Any) -> aio_pika.Message:
        # Wall time of publishing (AMQP: whole seconds), for the dial-queue lag metric.
        properties.setdefault("timestamp", datetime.now(UTC))
        return aio_pika.Message(
            body=self.model_dump_json().encode(),
            content_type="application/json",
            message_id=self.message_id,
            type=self.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            **properties,
        )

    @classmethod
    def from_body(cls, body: bytes) -> Envelope:
        return cls.model_validate(json.loads(body))
