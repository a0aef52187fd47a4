"""Events (list, retrieve) and webhook endpoints (create with a ``whsec_`` secret, list, delete)."""

from __future__ import annotations

import secrets
import urllib.parse

from .. import errors
from ..api import LIST_PARAMS, Context, apply_metadata, endpoint, list_endpoint, list_response, retrieve_endpoint
from ..primitives import API_VERSION, new_id

retrieve_event = retrieve_endpoint("/v1/events/<event_id>", "event", params="EventRetrieveParams")


def _of_types(events: list[dict], params: dict) -> list[dict]:
    """``type`` (``invoice.*`` matches a prefix) and ``types``."""
    if "type" in params:
        wanted = params["type"]
        if wanted.endswith("*"):
            events = [e for e in events if e["type"].startswith(wanted[:-1])]
        else:
            events = [e for e in events if e["type"] == wanted]
    if "types" in params:
        events = [e for e in events if e["type"] in params["types"]]
    return events


list_events = list_endpoint("/v1/events", "event", params="EventListParams", extra=("type", "types"), where=_of_types)


def _public_endpoint(endpoint_obj: dict) -> dict:
    shown = dict(endpoint_obj)
    shown.pop("secret", None)  # Stripe shows the secret only when the endpoint is created
    return shown


def _check_url(url: str) -> None:
    """The sender urlopen()s this URL, so only http(s) with a host gets stored (never file: or ftp:)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.invalid_request(
            "Invalid URL: URL must be publicly accessible and use http or https.", param="url", code="url_invalid"
        )


@endpoint(
    "POST",
    "/v1/webhook_endpoints",
    params="WebhookEndpointCreateParams",
    supported=["url", "enabled_events", "description", "metadata", "api_version"],
)
def create_webhook_endpoint(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    _check_url(params["url"])
    if params.get("api_version") not in (None, API_VERSION):
        raise errors.invalid_request(
            f"The sandbox speaks only API version {API_VERSION}; it cannot render events for {params['api_version']}.",
            param="api_version",
            code="parameter_unsupported",
        )
    hook = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": API_VERSION,
        "application": None,
        "created": ctx.now(),
        "description": params.get("description"),
        "enabled_events": params["enabled_events"],
        "livemode": False,
        "metadata": {},
        "secret": "whsec_" + secrets.token_urlsafe(32),
        "status": "enabled",
        "url": params["url"],
    }
    apply_metadata(hook, params.get("metadata"))
    ctx.store.put(hook)
    return hook


@endpoint("GET", "/v1/webhook_endpoints/<endpoint_id>", params="WebhookEndpointRetrieveParams")
def retrieve_webhook_endpoint(ctx: Context, params: dict, endpoint_id: str) -> dict:
    ctx.require_secret_key()
    return _public_endpoint(ctx.load(endpoint_id, "webhook_endpoint"))


@endpoint(
    "POST",
    "/v1/webhook_endpoints/<endpoint_id>",
    params="WebhookEndpointUpdateParams",
    supported=["url", "enabled_events", "description", "metadata", "disabled"],
)
def update_webhook_endpoint(ctx: Context, params: dict, endpoint_id: str) -> dict:
    ctx.require_secret_key()
    hook = ctx.load(endpoint_id, "webhook_endpoint")
    if "url" in params:
        _check_url(params["url"])
    for key in ("url", "enabled_events", "description"):
        if key in params:
            hook[key] = params[key]
    if "disabled" in params:
        hook["status"] = "disabled" if params["disabled"] else "enabled"
    apply_metadata(hook, params.get("metadata"))
    ctx.store.put(hook)
    return _public_endpoint(hook)


@endpoint("GET", "/v1/webhook_endpoints", params="WebhookEndpointListParams", supported=LIST_PARAMS)
def list_webhook_endpoints(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    hooks = [_public_endpoint(h) for h in ctx.store.all("webhook_endpoint") if not h.get("deleted")]
    return list_response(hooks, "/v1/webhook_endpoints", params)


@endpoint("DELETE", "/v1/webhook_endpoints/<endpoint_id>", params="WebhookEndpointDeleteParams")
def delete_webhook_endpoint(ctx: Context, params: dict, endpoint_id: str) -> dict:
    ctx.require_secret_key()
    ctx.load(endpoint_id, "webhook_endpoint")
    ctx.store.delete(endpoint_id)
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
