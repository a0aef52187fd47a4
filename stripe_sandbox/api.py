"""How a sandbox API endpoint is declared, and what a handler gets to work with.

A resource module declares its endpoints with :func:`endpoint`::

    @endpoint("POST", "/v1/customers", params="CustomerCreateParams",
              supported=["email", "name", "metadata"])
    def create_customer(ctx, params): ...

``params`` names the SDK's request TypedDict that the request is validated against and
``supported`` the parameters this sandbox implements (anything else Stripe knows is refused).
A handler returns the stored object (or a list response); the framework expands, checks and
renders it. ``publishable=True`` marks the few calls Stripe.js makes with a publishable key.

The plain calls need no handler of their own::

    retrieve_charge = retrieve_endpoint("/v1/charges/<charge_id>", "charge",
                                        params="ChargeRetrieveParams")
    list_charges = list_endpoint("/v1/charges", "charge", params="ChargeListParams",
                                 filters=("customer", "payment_intent"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import errors
from .store import Store
from .webhooks import create_event


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str
    handler: Callable
    params: str | type | None  # the SDK's TypedDict name, or a TypedDict (params.params_class)
    supported: tuple[str, ...]
    publishable: bool


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, rule: str, *, params: str | type | None = None, supported=(), publishable: bool = False):
    def register(handler):
        ENDPOINTS.append(Endpoint(method, rule, handler, params, tuple(supported), publishable))
        return handler

    return register


@dataclass
class Context:
    """What a handler sees: the store, the clock, who is calling and the request's identity."""

    store: Store
    key_kind: str  # "secret" or "publishable"
    request_id: str
    idempotency_key: str | None
    base_url: str
    events: list = field(default_factory=list)
    #: the configured business name (None: not configured), e.g. for an invoice's account_name
    merchant_name: str | None = None

    def now(self) -> int:
        return self.store.now()

    def require_secret_key(self) -> None:
        if self.key_kind != "secret":
            raise errors.unauthorized(
                "This API call cannot be made with a publishable API key. Please use a secret API key."
            )

    def load(
        self, object_id: str, object_type: str, *, param: str = "id", label: str | None = None, status: int = 404
    ) -> dict:
        """The stored, not deleted object of ``object_type``, or Stripe's resource_missing
        (``status=400`` for an object named by a parameter rather than the path)."""
        obj = self.store.get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != object_type or obj.get("deleted"):
            raise errors.no_such(label or object_type.split(".")[-1].replace("_", ""), object_id, param, status=status)
        return obj

    def public_url(self) -> str:
        """The public address of the sandbox (jobs run without a request: remember the last)."""
        if self.base_url:
            if self.store.meta("public_base_url") != self.base_url:
                self.store.set_meta("public_base_url", self.base_url)
            return self.base_url
        return self.store.meta("public_base_url", "") or ""

    def emit(self, event_type: str, obj: dict, previous_attributes: dict | None = None) -> dict:
        """Store a Stripe event for ``obj``, queue its webhooks, and keep it for the checks."""
        event = create_event(
            self.store,
            event_type,
            obj,
            previous_attributes,
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
        )
        self.events.append(event)
        return event


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
        raise errors.invalid_request(
            "Invalid limit: must be between 1 and 100", param="limit", code="parameter_invalid_integer"
        )
    start = 0
    ids = [o["id"] for o in objects]
    if params.get("starting_after"):
        cursor = params["starting_after"]
        if cursor not in ids:
            raise errors.no_such("object", cursor, "starting_after")
        start = ids.index(cursor) + 1
        page = objects[start : start + limit]
        has_more = start + limit < len(objects)
    elif params.get("ending_before"):
        cursor = params["ending_before"]
        if cursor not in ids:
            raise errors.no_such("object", cursor, "ending_before")
        end = ids.index(cursor)
        page = objects[max(0, end - limit) : end]
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
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return [o for o in objects if all(checks[op](o["created"], int(v)) for op, v in created.items())]


# --- the common endpoints: retrieve by id, list with filters ---------------------------------
#: the cursor parameters every list endpoint takes
LIST_PARAMS = ("limit", "starting_after", "ending_before")


def retrieve_endpoint(rule: str, object_type: str, *, params: str, label: str | None = None) -> Callable:
    """Declare ``GET rule`` (one ``<id>`` in the path): the stored object, or Stripe's 404
    ``resource_missing`` naming ``label`` (default: the type, as :meth:`Context.load` does)."""

    def retrieve(ctx: Context, _params: dict, **path: str) -> dict:
        ctx.require_secret_key()
        (object_id,) = path.values()
        return ctx.load(object_id, object_type, label=label)

    retrieve.__name__ = f"retrieve_{object_type.replace('.', '_')}"
    return endpoint("GET", rule, params=params)(retrieve)


def list_endpoint(
    rule: str,
    object_type: str,
    *,
    params: str,
    filters: tuple[str, ...] = (),
    created: bool = True,
    extra: tuple[str, ...] = (),
    where: Callable[[list[dict], dict], list[dict]] | None = None,
) -> Callable:
    """Declare ``GET rule``: every stored ``object_type`` (newest first, deleted ones left out),
    narrowed by the equality ``filters``, by ``where(objects, params)`` for the ``extra``
    parameters it reads, and by ``created``; then Stripe's cursor pagination."""

    def list_all(ctx: Context, list_params: dict) -> dict:
        ctx.require_secret_key()
        objects = [o for o in ctx.store.all(object_type) if not o.get("deleted")]
        objects = equal_filter(objects, list_params, filters)
        if where is not None:
            objects = where(objects, list_params)
        if created:
            objects = created_filter(objects, list_params.get("created"))
        return list_response(objects, rule, list_params)

    list_all.__name__ = f"list_{object_type.replace('.', '_')}"
    supported = [*filters, *extra, *(("created",) if created else ()), *LIST_PARAMS]
    return endpoint("GET", rule, params=params, supported=supported)(list_all)


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
