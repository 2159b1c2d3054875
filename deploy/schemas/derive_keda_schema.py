"""Derive deploy/schemas/keda-v1alpha1.json: strict JSON Schemas of KEDA's CRDs.

KEDA publishes its CRDs only as YAML in its repository; on PyPI they ship as pydantic
models generated from those CRDs (`cloudcoil-models-keda`). That package registers a
pytest plugin, so it is not installed in the project's venv: run this once in a scratch
venv when KEDA's version moves, and commit the output:

    python3 -m venv /tmp/keda && /tmp/keda/bin/pip install cloudcoil-models-keda
    /tmp/keda/bin/python deploy/schemas/derive_keda_schema.py > deploy/schemas/keda-v1alpha1.json

Objects refuse unknown fields, as `kubectl apply` does with strict field validation.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any

from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from pydantic.json_schema import models_json_schema


def _strict(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        if isinstance(node.get("title"), str):
            del node["title"]
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)


def main() -> int:
    _, top = models_json_schema(
        [(ScaledObject, "validation"), (TriggerAuthentication, "validation")],
        ref_template="#/$defs/{model}",
        by_alias=True,
    )
    _strict(top)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            "KEDA keda.sh/v1alpha1 ScaledObject and TriggerAuthentication, derived from "
            f"cloudcoil-models-keda {version('cloudcoil-models-keda')} (pydantic models "
            "generated from KEDA's CRDs) by deploy/schemas/derive_keda_schema.py; unknown "
            "fields refused, as kubectl's strict field validation does."
        ),
        "oneOf": [{"$ref": "#/$defs/ScaledObject"}, {"$ref": "#/$defs/TriggerAuthentication"}],
        "$defs": top["$defs"],
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
