"""``GET /api/v1/docs``: a self-contained HTML page rendered from the OpenAPI document.

No scripts and no external assets: the page works on a closed network.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{margin-top:2em;border-top:1px solid #ddd;padding-top:1em}
code,pre{font-family:ui-monospace,monospace;font-size:.9em}
pre{background:#f5f5f5;padding:.8em;overflow:auto;border-radius:4px}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.3em .6em;
text-align:left;vertical-align:top}
.m{display:inline-block;min-width:4.5em;font-weight:bold}
.GET{color:#0a6} .POST{color:#06c} .DELETE{color:#c30}
details{margin:.4em 0}
"""


def _pre(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    m = method.upper()
    parts = [
        f'<h2 id="{escape(op["operationId"])}"><span class="m {m}">{m}</span>'
        f"<code>{escape(path)}</code></h2>",
        f"<p><b>{escape(op['summary'])}.</b> {escape(op['description'])}</p>",
    ]
    if op.get("security"):
        parts.append("<p>Needs the <code>x-cybernet-api-key</code> header.</p>")
    if op.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{escape(p.get('description', ''))}</td>"
            f"<td><code>{escape(json.dumps(p['schema']))}</code></td></tr>"
            for p in op["parameters"]
        )
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>meaning</th><th>schema</th>"
            f"</tr>{rows}</table>"
        )
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        parts.append(
            f"<p>Body: <code>{escape(body['schema']['$ref'].rsplit('/', 1)[-1])}"
            "</code> (see Schemas)</p>"
        )
        if "example" in body:
            parts.append(
                f"<details open><summary>Example</summary>{_pre(body['example'])}</details>"
            )
    rows = ""
    for code, response in op["responses"].items():
        content: dict[str, Any] = next(iter(response.get("content", {}).values()), {})
        schema: dict[str, Any] = content.get("schema", {})
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        rows += (
            f"<tr><td>{escape(code)}</td><td>{escape(response['description'])}</td>"
            f"<td><code>{escape(name)}</code></td></tr>"
        )
    parts.append(f"<table><tr><th>status</th><th>meaning</th><th>body</th></tr>{rows}</table>")
    return "\n".join(parts)


def render_docs(spec: dict[str, Any]) -> str:
    """The HTML page for ``spec``."""
    info = spec["info"]
    toc, ops = [], []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            toc.append(
                f'<li><a href="#{escape(op["operationId"])}">{method.upper()} '
                f"{escape(path)}</a> — {escape(op['summary'])}</li>"
            )
            ops.append(_operation(path, method, op))
    schemas = "".join(
        f'<details id="schema-{escape(name)}"><summary><code>{escape(name)}</code></summary>'
        f"{_pre(schema)}</details>"
        for name, schema in spec["components"]["schemas"].items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])}</h1><p>Version {escape(info['version'])}. "
        f"{escape(info['description'])}</p>"
        '<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>'
        f"<ul>{''.join(toc)}</ul>{''.join(ops)}<h2>Schemas</h2>{schemas}</body></html>"
    )
