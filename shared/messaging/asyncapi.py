"""The AsyncAPI 3.0 document of Dialer's messaging, generated from the code.

Exchanges, queues, their arguments and bindings come from running
:func:`shared.messaging.topology.declare` against a recording channel; payload schemas
come from the pydantic models (:class:`~shared.messaging.envelope.Envelope`,
:class:`~shared.domain.messages.DialCommand`, :class:`~shared.domain.messages.AttemptResult`
and the event ``data`` models below, which ``tests/unit/test_asyncapi.py`` keeps equal to
what the publishing code sends). Regenerate the committed copy with::

    python -m shared.messaging.asyncapi > docs/asyncapi.yaml
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from aio_pika.abc import AbstractChannel
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.domain.messages import ATTEMPT_RESULT, DIAL, AttemptResult, DialCommand
from shared.domain.status import CallStatus, CampaignStatus
from shared.messaging.envelope import SCHEMA_VERSION, Envelope
from shared.messaging.topology import DIAL_KEY, RESULT_KEY, Names, declare

DEFAULT_PREFIX = "dialer"
#: Events that wake the scheduler owning a campaign (bound per owned campaign).
WAKE_EVENTS = ("call.finished", "campaign.appended")
_REF = "#/components/schemas/{model}"


# -- event data: what each event's ``data`` carries ------------------------------------
class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignCreatedData(_Data):
    """`campaign.created`: a campaign and its first calls were stored (API)."""

    status: CampaignStatus = Field(description="status after the create")
    call_records_added: int = Field(description="calls stored")
    duplicates_removed: int = Field(description="records dropped by day_unique")
    seq_from: int = Field(description="first insertion sequence number of the new calls")
    seq_to: int = Field(description="end (exclusive) of the sequence range reserved")


class CampaignAppendedData(_Data):
    """`campaign.appended`: calls were appended to a campaign (API)."""

    status: CampaignStatus = Field(description="status after the append")
    call_records_added: int = Field(description="calls stored")
    duplicates_removed: int = Field(description="records dropped by day_unique")
    seq_from: int = Field(description="first insertion sequence number of the new calls")
    seq_to: int = Field(description="end (exclusive) of the sequence range reserved")


class CampaignStatusChangedData(_Data):
    """`campaign.status_changed`: the owning scheduler moved the campaign's status, or an
    operator canceled the campaign (`dialer campaigns cancel`)."""

    status: CampaignStatus = Field(description="the new status")
    reason: str | None = Field(
        None,
        description="why: the operator's words for CANCELED, the error for FAILED; "
        "null for the scheduler's other moves",
    )


class CallDispatchedData(_Data):
    """`call.dispatched`: a call was claimed and its dial command published (scheduler)."""

    call_uuid: str
    attempt: int = Field(ge=1, description="the attempt number dispatched")


class CallStartedData(_Data):
    """`call.started`: a dialer worker is placing the call."""

    call_uuid: str
    attempt: int = Field(ge=1)
    phone_number: str = Field(description="the number dialed")


class CallFinishedData(_Data):
    """`call.finished`: an attempt's result was stored (scheduler)."""

    call_uuid: str
    attempt: int = Field(ge=1)
    status: CallStatus = Field(description="the call's status after this attempt")
    next_attempt_at: datetime | None = Field(description="when the next attempt is due, if any")
    result: AttemptResult


class CallDeletedData(_Data):
    """`call.deleted`: a PENDING call was deleted (API: by uuid or by phone number)."""

    call_uuid: str
    phone_number: str
    seq: int = Field(description="the call's insertion sequence number")


class CallRetriesCancelledData(_Data):
    """`call.retries_cancelled`: delete of a call in progress: no attempt after this one."""

    call_uuid: str


class CommandRejectedData(_Data):
    """`command.rejected`: a command without ``reply_to`` failed (API process)."""

    command: str = Field(description="the command's name, e.g. create_campaign")
    command_message_id: str | None = Field(description="message_id of the failed command")
    status: int = Field(description="the HTTP status the same request gets from the API")
    error: dict[str, Any] = Field(description="the API's error object: code, message, details")


@dataclass(frozen=True)
class EventSpec:
    type_name: str
    data: type[BaseModel]
    publisher: str


EVENTS: tuple[EventSpec, ...] = (
    EventSpec("campaign.created", CampaignCreatedData, "api"),
    EventSpec("campaign.appended", CampaignAppendedData, "api"),
    EventSpec("campaign.status_changed", CampaignStatusChangedData, "scheduler"),
    EventSpec("call.dispatched", CallDispatchedData, "scheduler"),
    EventSpec("call.started", CallStartedData, "worker"),
    EventSpec("call.finished", CallFinishedData, "scheduler"),
    EventSpec("call.deleted", CallDeletedData, "api"),
    EventSpec("call.retries_cancelled", CallRetriesCancelledData, "api"),
    EventSpec("command.rejected", CommandRejectedData, "api"),
)


@dataclass(frozen=True)
class WorkSpec:
    type_name: str
    routing_key: str
    data: type[BaseModel]
    sender: str
    receiver: str


WORK: tuple[WorkSpec, ...] = (
    WorkSpec(DIAL, DIAL_KEY, DialCommand, "scheduler", "worker"),
    WorkSpec(ATTEMPT_RESULT, RESULT_KEY, AttemptResult, "worker", "scheduler"),
)


# -- the topology, as declare() builds it ------------------------------------------------
@dataclass
class _Queue:
    name: str
    durable: bool
    arguments: dict[str, Any]
    bindings: list[tuple[str, str]] = field(default_factory=list)

    async def bind(self, exchange: _Exchange, routing_key: str) -> None:
        self.bindings.append((exchange.name, routing_key))


@dataclass
class _Exchange:
    name: str
    type: str
    durable: bool


@dataclass
class _RecordingChannel:
    """Stands in for an aio-pika channel: records what :func:`declare` declares."""

    exchanges: dict[str, _Exchange] = field(default_factory=dict)
    queues: dict[str, _Queue] = field(default_factory=dict)

    async def declare_exchange(self, name: str, type: Any, durable: bool = False) -> _Exchange:
        self.exchanges[name] = _Exchange(name, str(getattr(type, "value", type)), durable)
        return self.exchanges[name]

    async def declare_queue(
        self, name: str, durable: bool = False, arguments: dict[str, Any] | None = None
    ) -> _Queue:
        self.queues[name] = _Queue(name, durable, dict(arguments or {}))
        return self.queues[name]


def _complete(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never suspends (it only talks to the recorder)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("declare() suspended: it did more than declare")


def recorded_topology(names: Names) -> _RecordingChannel:
    channel = _RecordingChannel()
    _complete(declare(cast(AbstractChannel, channel), names))
    return channel


# -- document pieces -------------------------------------------------------------------
def _camel(dotted: str) -> str:
    parts = re.split(r"[._]", dotted)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _exchange_binding(exchange: _Exchange) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": exchange.name,
                "type": exchange.type,
                "durable": exchange.durable,
            },
            "bindingVersion": "0.3.0",
        }
    }


def _queue_binding(name: str, *, durable: bool = True, exclusive: bool = False) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "queue",
            "queue": {
                "name": name,
                "durable": durable,
                "exclusive": exclusive,
                "autoDelete": exclusive,
            },
            "bindingVersion": "0.3.0",
        }
    }


def _queue_channel(queue: _Queue, description: str, messages: list[str]) -> dict[str, Any]:
    return {
        "address": queue.name,
        "title": f"queue {queue.name}",
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": _queue_binding(queue.name, durable=queue.durable),
        "x-queue-arguments": queue.arguments,
        "x-bindings": [{"exchange": e, "routingKey": k} for e, k in queue.bindings],
    }


def _message(name: str, type_: str, data_ref: str, summary: str, routed: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "type": {"const": type_},
        "data": {"$ref": _REF.format(model=data_ref)},
    }
    required = ["type", "data"]
    if routed:  # an event's routing key ends with its campaign_uuid
        properties["campaign_uuid"] = {"type": "string"}
        required.append("campaign_uuid")
    return {
        "name": name,
        "title": type_,
        "summary": summary,
        "contentType": "application/json",
        "payload": {
            "allOf": [
                {"$ref": _REF.format(model="Envelope")},
                {
                    "type": "object",
                    "required": required,
                    "properties": properties,
                },
            ]
        },
        "bindings": {"amqp": {"messageType": type_, "bindingVersion": "0.3.0"}},
    }


def _dead_letter_message() -> dict[str, Any]:
    death = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "reason": {"type": "string", "enum": ["rejected", "delivery_limit", "expired"]},
            "queue": {"type": "string"},
            "exchange": {"type": "string"},
            "routing-keys": {"type": "array", "items": {"type": "string"}},
            "time": {"description": "AMQP timestamp of the death"},
        },
    }
    return {
        "name": "deadLetter",
        "title": "any Dialer message, dead-lettered",
        "summary": "A message rejected as malformed, or that failed its delivery limit.",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                "x-dialer-reason": {
                    "type": "string",
                    "description": "why the consumer gave up: `rejected: <what was wrong>` or "
                    "`failed <n> times: <the error>`",
                },
                "x-dialer-queue": {
                    "type": "string",
                    "description": "the queue the message was consumed from",
                },
                "x-death": {
                    "type": "array",
                    "items": death,
                    "description": "set by the broker when it dead-lettered the message "
                    "itself (the consumer's own dead-lettering failed, or none ran)",
                },
                "x-first-death-reason": {"type": "string"},
                "x-first-death-queue": {"type": "string"},
                "x-first-death-exchange": {"type": "string"},
            },
        },
        "payload": {
            "description": "The original body, usually an Envelope (a malformed one is kept "
            "as it was)."
        },
    }


def _operation(
    action: str, channel: str, messages: list[str], summary: str, ack: bool = False
) -> dict[str, Any]:
    amqp: dict[str, Any] = {"ack": True} if ack else {"deliveryMode": 2}
    amqp["bindingVersion"] = "0.3.0"
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
        "bindings": {"amqp": amqp},
    }


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [Envelope, *(w.data for w in WORK), *(e.data for e in EVENTS)]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    defs: dict[str, Any] = top["$defs"]
    return dict(sorted(defs.items()))


INFO_DESCRIPTION = """\
Dialer's RabbitMQ interface. Every message is a JSON envelope (`Envelope`:
`schema_version` {version}, `message_id`, `type`, `occurred_at`, `firm_id`,
`campaign_uuid`, `data`), persistent, with the AMQP `message_id` and `type` properties set.

Names carry the deployment's `AMQP_PREFIX` (here the default, `{prefix}`).

- **Events**: topic exchange `{prefix}.events`, routing key `<entity>.<event>.<campaign_uuid>`.
  To follow them, bind a queue of your own, e.g. `call.finished.*` (every campaign),
  `*.*.<campaign_uuid>` (one campaign) or `#` (everything).
- **Work**: direct exchange `{prefix}.work`; routing key `dial` to the dialer workers' quorum
  queue `{prefix}.dial`, `result` to the schedulers' quorum queue `{prefix}.results`.
- **Dead letters**: a message that fails {limit} deliveries, or that a consumer rejects as
  malformed, goes to the fanout exchange `{prefix}.dlx` and the quorum queue `{prefix}.dead`,
  with the reason in its `x-dialer-reason` header (or the broker's `x-death` headers).

Generated by `python -m shared.messaging.asyncapi`; do not edit by hand.
"""


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


@dataclass
class _Parts:
    names: Names
    topo: _RecordingChannel
    channels: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, Any] = field(default_factory=dict)

    def event(self, e: EventSpec) -> None:
        name, events = _camel(e.type_name), self.topo.exchanges[self.names.events]
        summary = (e.data.__doc__ or "").strip()
        self.messages[name] = _message(name, e.type_name, e.data.__name__, summary, routed=True)
        self.channels[name] = {
            "address": f"{e.type_name}.{{campaign_uuid}}",
            "title": f"{e.type_name} events",
            "description": f"Events `{e.type_name}` on the topic exchange `{events.name}`.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "parameters": {"campaign_uuid": {"$ref": "#/components/parameters/campaign_uuid"}},
            "bindings": _exchange_binding(events),
        }
        self.operations[f"{e.publisher}Send{_upper_first(name)}"] = _operation(
            "send", name, [name], f"The {e.publisher} publishes `{e.type_name}`."
        )

    def work(self, w: WorkSpec, queue_channel: str, queue: str) -> None:
        """A work message: published to the work exchange, consumed from its queue."""
        name, work = _camel(w.type_name), self.topo.exchanges[self.names.work]
        summary = (w.data.__doc__ or "").strip()
        self.messages[name] = _message(name, w.type_name, w.data.__name__, summary, routed=False)
        route = f"work{_upper_first(w.routing_key)}"
        self.channels[route] = {
            "address": w.routing_key,
            "title": f"{w.type_name} to {work.name}",
            "description": f"The {w.sender} publishes `{w.type_name}` to the direct exchange "
            f"`{work.name}` with routing key `{w.routing_key}`.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": _exchange_binding(work),
        }
        self.channels[queue_channel] = _queue_channel(
            self.topo.queues[queue],
            f"Quorum queue of `{w.type_name}`, read by the {w.receiver}.",
            [name],
        )
        self.operations[f"{w.sender}Send{_upper_first(name)}"] = _operation(
            "send", route, [name], f"The {w.sender} publishes `{w.type_name}`."
        )
        self.operations[f"{w.receiver}Receive{_upper_first(name)}"] = _operation(
            "receive",
            queue_channel,
            [name],
            f"The {w.receiver} consumes `{w.type_name}`.",
            ack=True,
        )

    def scheduler_queues(self) -> None:
        """The shared campaigns queue and each scheduler's private wake queue."""
        queue = self.topo.queues[self.names.campaigns_queue]
        created = [_camel(key.removesuffix(".*")) for _, key in queue.bindings]
        self.channels["schedulerCampaignsQueue"] = _queue_channel(
            queue,
            "Quorum queue shared by the schedulers: a new or appended campaign is taken at once.",
            created,
        )
        self.operations["schedulerReceiveCampaignEvents"] = _operation(
            "receive",
            "schedulerCampaignsQueue",
            created,
            "A scheduler takes a lease on a new or appended campaign.",
            ack=True,
        )
        wake = [_camel(t) for t in WAKE_EVENTS]
        keys = ", ".join(f"`{t}.<campaign_uuid>`" for t in WAKE_EVENTS)
        self.channels["schedulerWakeQueue"] = {
            "address": None,
            "title": "a scheduler's wake queue",
            "description": f"Exclusive, server-named queue of each scheduler, bound to {keys} "
            f"on `{self.names.events}` for every campaign it owns: a freed slot is refilled "
            "at once.",
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in wake},
            "bindings": _queue_binding("", durable=False, exclusive=True),
        }
        self.operations["schedulerReceiveWakeUps"] = _operation(
            "receive", "schedulerWakeQueue", wake, "The owner of a campaign is woken."
        )

    def dead_letters(self) -> None:
        n = self.names
        self.channels["deadLetterQueue"] = _queue_channel(
            self.topo.queues[n.dead],
            f"Dead letters of `{n.dial_queue}`, `{n.results_queue}` and "
            f"`{n.campaigns_queue}`, through the fanout exchange `{n.dlx}`.",
            ["deadLetter"],
        )
        self.messages["deadLetter"] = _dead_letter_message()
        self.operations["operatorReceiveDeadLetters"] = _operation(
            "receive",
            "deadLetterQueue",
            ["deadLetter"],
            "An operator reads dead letters.",
            ack=True,
        )


def build(prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a JSON-compatible dict."""
    names = Names(prefix)
    parts = _Parts(names, recorded_topology(names))
    for e in EVENTS:
        parts.event(e)
    parts.work(WORK[0], "dialQueue", names.dial_queue)
    parts.work(WORK[1], "resultsQueue", names.results_queue)
    parts.scheduler_queues()
    parts.dead_letters()
    limit = parts.topo.queues[names.dial_queue].arguments.get("x-delivery-limit")
    description = INFO_DESCRIPTION.format(version=SCHEMA_VERSION, prefix=prefix, limit=limit)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Dialer messaging",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": description,
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ of `AMQP_URL`.",
                "variables": {"host": {"default": "localhost"}, "port": {"default": "5672"}},
            }
        },
        "channels": parts.channels,
        "operations": parts.operations,
        "components": {
            "schemas": _schemas(),
            "messages": parts.messages,
            "parameters": {
                "campaign_uuid": {"description": "uuid of the campaign the event is about"}
            },
        },
    }


# -- a small YAML emitter (block style; strings quoted unless plainly safe) ---------------
_PLAIN = re.compile(r"[A-Za-z$][A-Za-z0-9_./$ -]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(value: object) -> str:
    if isinstance(value, str):
        plain = (
            _PLAIN.fullmatch(value)
            and value.lower() not in _RESERVED
            and not value.endswith(" ")
            and " -" not in value
        )
        return value if plain else json.dumps(value)
    return json.dumps(value)


def _is_block(value: object) -> bool:
    return isinstance(value, dict | list) and bool(value)


def _yaml_lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_scalar(str(key))}:"
            if _is_block(item):
                out.append(head)
                out.extend(_yaml_lines(item, indent + 2))
            elif isinstance(item, str) and _literal_ok(item):
                out.append(f"{head} |" + ("" if item.endswith("\n") else "-"))
                body = item[:-1] if item.endswith("\n") else item
                out.extend(f"{pad}  {line}" if line else "" for line in body.split("\n"))
            else:
                out.append(f"{head} {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if _is_block(item):
                sub = _yaml_lines(item, indent + 2)
                out.append(f"{pad}- {sub[0].lstrip()}")
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {_scalar(item)}")
    return out


def _literal_ok(text: str) -> bool:
    return "\n" in text and not text.startswith((" ", "\n")) and not text.endswith("\n\n")


def to_yaml(document: dict[str, Any]) -> str:
    return "\n".join(_yaml_lines(document, 0)) + "\n"


def main() -> int:
    sys.stdout.write(to_yaml(build()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
