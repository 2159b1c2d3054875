"""The AsyncAPI document: committed copy up to date, valid AsyncAPI 3.0, true to the code.

Validation: the `asyncapi3` package's strict AsyncAPI 3.0 object model (pydantic; unknown
fields other than `x-` extensions are refused, AMQP 0.3.0 bindings included), JSON Schema
draft-07 meta-validation of every payload schema, and local checks of what the model does
not cover (references resolve, operations use their channel's messages). Truth to the
code: event types and `data` keys are read from the publishing code's syntax tree.
"""

from __future__ import annotations

import ast
import copy
import re
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from shared.domain.messages import AttemptResult, DialCommand
from shared.domain.status import CallStatus, Outcome
from shared.messaging.asyncapi import EVENTS, WAKE_EVENTS, WORK, build, to_yaml
from shared.messaging.envelope import Envelope
from shared.messaging.topology import Names

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
DOC_URI = "urn:dialer:asyncapi"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build()


def _asyncapi3_model() -> Any:
    with warnings.catch_warnings():
        # The package's models shadow BaseModel.schema; harmless, and not ours to fix.
        warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)
        from asyncapi3.models.asyncapi import AsyncAPI3
    return AsyncAPI3


# -- the committed file ------------------------------------------------------------------
def test_committed_document_is_regenerated() -> None:
    assert COMMITTED.read_text() == to_yaml(build()), (
        "docs/asyncapi.yaml is stale: python -m shared.messaging.asyncapi > docs/asyncapi.yaml"
    )


def test_yaml_emitter_round_trips(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(doc)) == doc
    tricky = {"a": ["yes", "1.0", "x: y", "#c", " lead", "l1\nl2", "l1\n", "", None, True, 3]}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


# -- AsyncAPI 3.0 ------------------------------------------------------------------------
def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_valid_against_the_asyncapi3_object_model(doc: dict[str, Any]) -> None:
    model = _asyncapi3_model().model_validate(doc)
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert _without_nulls(dumped) == _without_nulls(doc)  # nothing was silently dropped


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        (("channels", "callFinished"), "adress", "x"),
        (("operations", "workerReceiveCallDial"), "action", "publish"),
        (("channels", "dialQueue", "bindings", "amqp"), "is", "exchange"),
    ],
)
def test_the_object_model_catches_mistakes(
    doc: dict[str, Any], path: tuple[str, ...], key: str, value: str
) -> None:
    broken = copy.deepcopy(doc)
    node = broken
    for part in path:
        node = node[part]
    node[key] = value
    with pytest.raises(ValidationError):
        _asyncapi3_model().model_validate(broken)


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        _resolve(doc, ref)


def test_operations_use_messages_of_their_channel(doc: dict[str, Any]) -> None:
    for op_id, op in doc["operations"].items():
        channel_ref = op["channel"]["$ref"]
        for message in op["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), op_id
        assert op["action"] in {"send", "receive"}


def test_address_parameters_are_declared(doc: dict[str, Any]) -> None:
    for name, channel in doc["channels"].items():
        params = set(re.findall(r"{(\w+)}", channel["address"] or ""))
        assert params == set(channel.get("parameters", {})), name


def test_payload_schemas_are_draft7_schemas(doc: dict[str, Any]) -> None:
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)
    for message in doc["components"]["messages"].values():
        jsonschema.Draft7Validator.check_schema(message["payload"])


# -- true to the topology and the code ----------------------------------------------------
def test_every_queue_and_exchange_is_described(doc: dict[str, Any]) -> None:
    names = Names("dialer")
    addresses = {c["address"] for c in doc["channels"].values()}
    queues = {names.dial_queue, names.results_queue, names.campaigns_queue, names.dead}
    assert queues <= addresses
    exchanges = {
        c["bindings"]["amqp"]["exchange"]["name"]
        for c in doc["channels"].values()
        if c["bindings"]["amqp"]["is"] == "routingKey"
    }
    assert exchanges == {names.events, names.work}
    dead = doc["channels"]["deadLetterQueue"]
    assert dead["x-bindings"] == [{"exchange": names.dlx, "routingKey": ""}]
    dial = doc["channels"]["dialQueue"]["x-queue-arguments"]
    assert dial == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": names.dlx,
    }


def test_wake_events_match_the_scheduler() -> None:
    from services.scheduler.main import WAKE_EVENTS as SCHEDULER_WAKE_EVENTS

    assert tuple(SCHEDULER_WAKE_EVENTS) == WAKE_EVENTS


def test_every_event_in_the_readme_is_documented(doc: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Messaging (names prefixed") :].split("\n\n")[0]
    listed = set(re.findall(r"`((?:campaign|call|command)\.[a-z_]+)`", paragraph))
    assert listed == {e.type_name for e in EVENTS}


class _Published(ast.NodeVisitor):
    """Finds `Envelope(type=..., data=...)` and `self._event(TYPE, firm, campaign, now, data)`."""

    def __init__(self, constants: dict[str, str]) -> None:
        self.constants = constants
        self.found: dict[str, set[frozenset[str] | str]] = {}

    def _str(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        return None

    def _data(self, node: ast.expr | None) -> frozenset[str] | str:
        if isinstance(node, ast.Dict):
            return frozenset(k.value for k in node.keys if isinstance(k, ast.Constant))
        # DialCommand(...).model_dump(...) / result.model_dump(...): name the model
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            inner = node.func.value
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name):
                return inner.func.id
            return ast.unparse(inner)
        return ast.unparse(node) if node is not None else "?"

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        type_: str | None = None
        data: frozenset[str] | str = "?"
        if name == "Envelope":
            kw = {k.arg: k.value for k in node.keywords}
            if "type" in kw:
                type_, data = self._str(kw["type"]), self._data(kw.get("data"))
        elif name in {"_publish", "_envelope", "_event"} and len(node.args) == 5:
            type_, data = self._str(node.args[0]), self._data(node.args[4])
        if type_ is not None:
            self.found.setdefault(type_, set()).add(data)
        self.generic_visit(node)


def _published() -> dict[str, set[frozenset[str] | str]]:
    files = [
        p
        for folder in ("services", "shared")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "asyncapi.py"
    ]
    trees = [ast.parse(p.read_text()) for p in files]
    constants = {
        t.id: n.value.value
        for tree in trees
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name) and isinstance(n.value.value, str)
    }
    visitor = _Published(constants)
    for tree in trees:
        visitor.visit(tree)
    return visitor.found


def test_documented_types_are_exactly_those_the_code_publishes() -> None:
    published = _published()
    documented = {e.type_name for e in EVENTS} | {w.type_name for w in WORK}
    assert set(published) == documented


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type_name)
def test_event_data_fields_match_the_code(event: Any) -> None:
    shapes = _published()[event.type_name]
    assert shapes == {frozenset(event.data.model_fields)}


def test_work_payloads_are_the_message_models() -> None:
    published = _published()
    assert published["call.dial"] == {"DialCommand"}
    assert published["call.attempt_result"] == {"result"}  # AttemptResult.model_dump()
    assert [w.data for w in WORK] == [DialCommand, AttemptResult]


# -- real messages validate against the document ------------------------------------------
def _validator(doc: dict[str, Any], message: str) -> jsonschema.Draft7Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT7)
    )
    schema = {"$ref": f"{DOC_URI}#/components/messages/{message}/payload"}
    return jsonschema.Draft7Validator(schema, registry=registry)


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _fields_of(model: type[BaseModel], **candidates: Any) -> dict[str, Any]:
    """The candidates the model has: the message models grow fields (``seq`` did)."""
    return {k: v for k, v in candidates.items() if k in model.model_fields}


def _result() -> AttemptResult:
    return AttemptResult(
        **_fields_of(
            AttemptResult,
            call_uuid=str(uuid.uuid4()),
            campaign_uuid=str(uuid.uuid4()),
            seq=0,
            attempt=1,
            outcome=Outcome.NO_ANSWER,
            started_at=NOW,
            ended_at=NOW,
        )
    )


def test_a_call_finished_event_from_the_scheduler_validates(doc: dict[str, Any]) -> None:
    from services.scheduler.results import _finished_event
    from shared.storage.engine import Settled

    result = _result()
    settled = Settled(
        result.call_uuid, result.campaign_uuid, "acme", CallStatus.PENDING, NOW, result
    )
    body = _finished_event(settled).model_dump(mode="json")
    _validator(doc, "callFinished").validate(body)
    body["data"]["surprise"] = 1
    assert not _validator(doc, "callFinished").is_valid(body)
    assert not _validator(doc, "callStarted").is_valid(_finished_event(settled).model_dump())


def _dial_command(result: AttemptResult) -> DialCommand:
    return DialCommand(
        **_fields_of(
            DialCommand,
            call_uuid=result.call_uuid,
            campaign_uuid=result.campaign_uuid,
            seq=0,
            firm_id="acme",
            attempt=1,
            phone_number="+12122000001",
            language="EN",
            gender_voice="female",
            agent_name="agent",
        )
    )


@pytest.mark.parametrize("message", ["callDial", "callAttemptResult"])
def test_work_messages_validate(doc: dict[str, Any], message: str) -> None:
    result = _result()
    data: BaseModel = _dial_command(result) if message == "callDial" else result
    type_ = doc["components"]["messages"][message]["title"]
    body = Envelope(type=type_, occurred_at=NOW, data=data.model_dump(mode="json")).model_dump(
        mode="json"
    )
    _validator(doc, message).validate(body)
    body["data"].pop("call_uuid")
    assert not _validator(doc, message).is_valid(body)
