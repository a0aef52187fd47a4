"""Checking what Stripe delivered, before anything is stored: the signature (the gateway) and
the event's shape -- everything processing relies on (an ``evt_`` id, a type, an integer
``created``, an object in ``data.object`` whose fields the handlers read have the types they
expect). A signed event that fails is answered 400 and nothing is stored."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app

from ..stripe_gateway import WebhookPayloadInvalid, get_gateway

#: how far a signature's timestamp may be from now, either way (Stripe's default)
TOLERANCE_SECONDS = 300

_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,200}")
_EVENT_TYPE = re.compile(r"[a-z_]+(\.[a-z_]+)+")
_MAX_CREATED = 2**31 - 1  # the column is a 32-bit integer (Stripe's seconds fit until 2038)

# What the handlers read from an event's own copy of its object, by key, wherever the key appears
# (the object, its lines, items, payments...). A signed event with another type there is
# malformed: 400 and nothing stored, not a 500 from deep inside a handler.
_HASHES = frozenset(
    {
        "metadata",
        "parent",
        "subscription_details",
        "items",
        "lines",
        "payments",
        "payment",
        "confirmation_secret",
        "pricing",
        "price_details",
        "subscription_item_details",
        "invoice_item_details",
        "last_payment_error",
    }
)
_INTEGERS = frozenset(
    {
        "amount",
        "amount_received",
        "amount_total",
        "amount_paid",
        "amount_due",
        "amount_refunded",
        "created",
        "canceled_at",
        "ended_at",
        "period_end",
        "current_period_start",
        "current_period_end",
        "next_payment_attempt",
    }
)
_STRINGS = frozenset(
    {
        "id",
        "object",
        "status",
        "currency",
        "payment_status",
        "mode",
        "client_reference_id",
        "billing_reason",
        "client_secret",
    }
)
_REFERENCES = frozenset(
    {
        "customer",
        "payment_intent",
        "invoice",
        "subscription",
        "latest_charge",
        "payment_method",
        "charge",
        "price",
        "latest_invoice",
    }
)  # an id or the object


def _malformed(value: Any, depth: int = 0) -> str | None:
    """The path of the first field the handlers could not read (None: all readable)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if depth > 20:  # far deeper than any Stripe object
            return str(key)
        if item is None:
            continue
        if isinstance(item, str) and (
            "\x00" in item
            or (key in _STRINGS | _REFERENCES and len(item) > 255)
            or (key not in _STRINGS | _REFERENCES and len(item) > 5000)
        ):
            return str(key)  # Stripe sends no NUL, ids and enums of at most 255, no huge strings
        if (
            (key in _HASHES and not isinstance(item, dict))
            or (key in _INTEGERS and (type(item) is not int or abs(item) > 2**31 - 1))
            or (key in _STRINGS and not isinstance(item, str))
            or (key in _REFERENCES and not isinstance(item, str | dict))
            or (key == "data" and not isinstance(item, list))
            or (key == "metadata" and not all(isinstance(v, str) for v in item.values()))
        ):
            return str(key)
        found = _malformed(item, depth + 1)
        if found:
            return f"{key}.{found}"
    return None


def parse(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The verified event, or :class:`WebhookSignatureInvalid` / :class:`WebhookPayloadInvalid`
    (both 400). Everything processing relies on is checked here, before anything is stored."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    event = get_gateway().verify_webhook(payload, signature, secret, tolerance=TOLERANCE_SECONDS)
    check_event(event)
    return event


def check_event(event: dict[str, Any]) -> None:
    def bad(message: str) -> WebhookPayloadInvalid:
        return WebhookPayloadInvalid(f"the event {message}", user_message=f"The webhook event {message}.")

    event_id = event.get("id")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise bad("has no valid id")
    event_type = event.get("type")
    if not isinstance(event_type, str) or len(event_type) > 100 or not _EVENT_TYPE.fullmatch(event_type):
        raise bad("has no valid type")
    created = event.get("created")
    if type(created) is not int or not 0 < created <= _MAX_CREATED:
        raise bad("has no valid created timestamp")
    if not isinstance(event.get("livemode", False), bool):
        raise bad("has an invalid livemode")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise bad("has no object in data.object")
    object_id = obj.get("id")
    if object_id is not None and (not isinstance(object_id, str) or not 0 < len(object_id) <= 255):
        raise bad("object has an invalid id")
    field = _malformed(obj)
    if field:
        raise bad(f"object has an invalid {field[:100]}")
