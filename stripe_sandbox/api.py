"""How a sandbox API endpoint is declared, and what a handler gets to work with.

A resource module declares its endpoints with :func:`endpoint`::

    @endpoint("POST", "/v1/customers", params="CustomerCreateParams",
              supported=["email", "name", "metadata"])
    def create_customer(ctx, params): ...

``params`` names the SDK's request TypedDict that the request is validated against and
``supported`` the parameters this sandbox implements (anything else Stripe knows is refused).
A handler returns the stored object (or a list response); the framework expands, checks and
renders it. ``publishable=True`` marks the few calls Stripe.js makes with a publishable key.
"""
from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from . import errors
from .store import Store

API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str
    handler: Callable
    params: str | type | None  # the SDK's TypedDict name, or a TypedDict (params.params_class)
    supported: tuple[str, ...]
    publishable: bool


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, rule: str, *, params: str | type | None = None, supported=(),
             publishable: bool = False):
    def register(handler):
        ENDPOINTS.append(Endpoint(method, rule, handler, params, tuple(supported), publishable))
        return handler
    return register


_ALPHABET = string.ascii_letters + string.digits

#: id prefix -> object type, for expansion and for looking objects up by id
PREFIXES = {
    "cus": "customer", "prod": "product", "price": "price", "pm": "payment_method",
    "seti": "setup_intent", "pi": "payment_intent", "ch": "charge", "py": "charge",
    "re": "refund", "dp": "dispute", "cs": "checkout.session", "sub": "subscription",
    "si": "subscription_item", "in": "invoice", "il": "line_item", "evt": "event",
    "we": "webhook_endpoint", "bps": "billing_portal.session", "inpay": "invoice_payment",
    "setatt": "setup_attempt", "li": "item",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def type_of(object_id: str) -> str | None:
    return PREFIXES.get(object_id.split("_", 1)[0]) if isinstance(object_id, str) else None


@dataclass
class Context:
    """What a handler sees: the store, the clock, who is calling and the request's identity."""
    store: Store
    key_kind: str  # "secret" or "publishable"
    request_id: str
    idempotency_key: str | None
    base_url: str
    events: list = field(default_factory=list)

    def now(self) -> int:
        return self.store.now()

    def require_secret_key(self) -> None:
        if self.key_kind != "secret":
            raise errors.unauthorized("This API call cannot be made with a publishable API key. "
                                      "Please use a secret API key.")

    def load(self, object_id: str, object_type: str, *, param: str = "id",
             label: str | None = None) -> dict:
        obj = self.store.get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != object_type or obj.get("deleted"):
            raise errors.no_such(label or object_type.split(".")[-1].replace("_", ""), object_id,
                                 param)
        return obj

    def emit(self, event_type: str, obj: dict, previous_attributes: dict | None = None) -> dict:
        from .webhooks import create_event  # webhooks import api: late import breaks the cycle
        return create_event(self, event_type, obj, previous_attributes)


def apply_metadata(obj: dict, new: dict | str | None) -> None:
    """Stripe's metadata update: merge; an empty string unsets a key; '' as a whole clears."""
    if new is None:
        return
    if isinstance(new, str):  # the schema admits only '' here
        if new:
            raise errors.invalid_request("Invalid object", param="metadata", code="parameter_invalid")
        obj["metadata"] = {}
        return
    merged = dict(obj.get("metadata") or {})
    for key, value in new.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    obj["metadata"] = merged


def list_response(objects: list[dict], url: str, params: dict) -> dict:
    """Stripe's cursor pagination over ``objects`` (newest first)."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise errors.invalid_request("Invalid limit: must be between 1 and 100", param="limit",
                                     code="parameter_invalid_integer")
    start = 0
    ids = [o["id"] for o in objects]
    if params.get("starting_after"):
        cursor = params["starting_after"]
        if cursor not in ids:
            raise errors.no_such("object", cursor, "starting_after")
        start = ids.index(cursor) + 1
        page = objects[start:start + limit]
        has_more = start + limit < len(objects)
    elif params.get("ending_before"):
        cursor = params["ending_before"]
        if cursor not in ids:
            raise errors.no_such("object", cursor, "ending_before")
        end = ids.index(cursor)
        page = objects[max(0, end - limit):end]
        has_more = end - limit > 0
    else:
        page = objects[:limit]
        has_more = len(objects) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def equal_filter(objects: list[dict], params: dict, keys) -> list[dict]:
    """A list call's equality filters (``customer=cus_…``, ``active=false``); an empty
    value filters nothing."""
    for key in keys:
        if params.get(key) not in (None, ""):
            objects = [o for o in objects if o.get(key) == params[key]]
    return objects


def created_filter(objects: list[dict], created) -> list[dict]:
    """``created`` as an exact timestamp or a ``{gt, gte, lt, lte}`` range."""
    if created is None:
        return objects
    if isinstance(created, int):
        return [o for o in objects if o["created"] == created]
    checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
              "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    return [o for o in objects
            if all(checks[op](o["created"], int(v)) for op, v in created.items())]


# --- in-process signals between resource modules ---------------------------------------------
#: signal name -> listeners; e.g. "payment_intent.changed" lets invoices and Checkout Sessions
#: react when the PaymentIntent they own succeeds, fails or needs action.
_LISTENERS: dict[str, list[Callable]] = {}


def listen(signal: str):
    def register(fn):
        _LISTENERS.setdefault(signal, []).append(fn)
        return fn
    return register


def notify(signal: str, ctx: Context, obj: dict, **details) -> None:
    for fn in _LISTENERS.get(signal, []):
        fn(ctx, obj, **details)
