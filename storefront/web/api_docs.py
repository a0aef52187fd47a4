"""The JSON API's contract: ``GET /api/openapi.json`` (the OpenAPI 3.1 document, hand-kept in
``storefront/openapi.json``) and ``GET /api/docs`` (the same document as a page, rendered here on
the server: no script, so the store's Content-Security-Policy needs nothing new).

The document is read once when the app is created; ``tests/test_openapi_contract.py`` checks that
its paths are exactly the app's ``/api`` URL rules and runs schemathesis against it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, request

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "openapi.json"
EXTENSION_KEY = "storefront.openapi"
METHODS = ("get", "post", "put", "patch", "delete")
#: the document changes only with a deployment
CACHE_CONTROL = "public, max-age=300"

bp = Blueprint("api_docs", __name__, url_prefix="/api")


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3.1"):
        raise ValueError(f"{path} is not an OpenAPI 3.1 document")
    return document


def document() -> dict[str, Any]:
    return current_app.extensions[EXTENSION_KEY]["document"]


def init_app(app: Flask) -> None:
    doc = load_document()
    body = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    app.extensions[EXTENSION_KEY] = {
        "document": doc,
        "body": body,
        "etag": hashlib.sha256(body).hexdigest()[:32],
    }
    app.register_blueprint(bp)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The document, cacheable (ETag; If-None-Match answers 304)."""
    state = current_app.extensions[EXTENSION_KEY]
    response = Response(state["body"], mimetype="application/json")
    response.set_etag(state["etag"])
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.make_conditional(request)  # 304 with no body when If-None-Match names this copy
    return response


@bp.get("/docs")
def docs() -> str:
    """The document as a page: every operation, its parameters, body and answers, the schemas."""
    doc = document()
    return render_template(
        "api/docs.html",
        info=doc["info"],
        operations=list(_operations(doc)),
        schemas=[(name, _schema_view(doc, schema)) for name, schema in doc["components"]["schemas"].items()],
    )


# --- reading the document for the page ---------------------------------------------------------


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``node``, or what its ``$ref`` points at, with the referenced name."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return None, node
    target: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return ref.rsplit("/", 1)[-1], target


def _type_text(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    name, resolved = _resolve(doc, schema)
    if name:
        return name
    if resolved.get("type") == "array":
        return f"array of {_type_text(doc, resolved.get('items', {}))}"
    kind = resolved.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in resolved:
        text += ": " + ", ".join("null" if v is None else str(v) for v in resolved["enum"])
    if "pattern" in resolved:
        text += f" matching {resolved['pattern']}"
    return text


def _schema_view(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema as the page shows it: its type, and a row per property."""
    name, resolved = _resolve(doc, schema)
    required = set(resolved.get("required", []))
    rows = [
        {
            "name": prop,
            "type": _type_text(doc, sub),
            "required": prop in required,
            "description": _resolve(doc, sub)[1].get("description", ""),
        }
        for prop, sub in resolved.get("properties", {}).items()
    ]
    return {
        "name": name,
        "type": _type_text(doc, schema),
        "description": resolved.get("description", ""),
        "properties": rows,
    }


def _responses(doc: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for status, answer in operation.get("responses", {}).items():
        _name, resolved = _resolve(doc, answer)
        content = resolved.get("content", {})
        media = next(iter(content), None)
        rows.append(
            {
                "status": status,
                "description": resolved.get("description", ""),
                "media": media,
                "schema": _type_text(doc, content[media]["schema"]) if media else "",
                "headers": sorted(resolved.get("headers", {})),
            }
        )
    return rows


def _operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if (operation := item.get(method)) is None:
                continue
            body = operation.get("requestBody", {}).get("content", {})
            media = next(iter(body), None)
            yield {
                "id": operation.get("operationId", f"{method}-{path}"),
                "method": method.upper(),
                "path": path,
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "tags": operation.get("tags", []),
                "parameters": [
                    {**p, "type": _type_text(doc, p.get("schema", {}))} for p in operation.get("parameters", [])
                ],
                "body_media": media,
                "body": _schema_view(doc, body[media]["schema"]) if media else None,
                "responses": _responses(doc, operation),
            }
