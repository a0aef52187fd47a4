"""Stripe webhooks: verify, fetch from Stripe, then store and apply in one short transaction.

1. The raw body's ``Stripe-Signature`` is checked (400 without a valid one, or when the
   timestamp is more than the tolerance away from now, in the past or the future), and the
   event's shape: a UTF-8 JSON Stripe event with an ``evt_`` id, an integer ``created`` and an
   object in ``data.object`` (400 otherwise; nothing is stored).
2. The event's handler (registered by type in :mod:`.events`) fetches what it needs from
   Stripe (a subscription or invoice is always re-fetched: the event's copy may be stale) with
   **no database transaction open**: a slow Stripe must never hold a lock.
3. One short unit of work stores the event by its Stripe id (its first statement, unique on the
   id) and applies it (the handler's apply step); they commit together. A repeat of an event
   already processed answers 200 and does nothing. A failure rolls that back, stores the event
   with the error, and answers 500 (503 when the fetch failed because Stripe is unavailable),
   so Stripe retries. Events about objects we don't know are logged and acknowledged.
4. After commit, Stripe writes the change made owed (a Lifetime purchase ends the buyer's
   subscription) are sent: :func:`.uow.run_after_commit`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..models import StripeEvent
from ..models.base import insert_or_ignore, utcnow
from ..stripe_gateway import (
    GatewayError,
    WebhookPayloadInvalid,
    get_gateway,
    idempotency_key,
)
from . import events
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: Stripe events are a few KiB; a body larger than this is refused before it is read (413)
MAX_BYTES = 256 * 1024
#: how far a signature's timestamp may be from now, either way (Stripe's default)
TOLERANCE_SECONDS = 300

#: the events the store listens to (registered with the webhook endpoint): those with a handler
ENABLED_EVENTS = events.enabled_events()

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


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]


# --- checking what arrived ---------------------------------------------------------------------


def parse(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The verified event, or :class:`WebhookSignatureInvalid` / :class:`WebhookPayloadInvalid`
    (both 400). Everything processing relies on is checked here, before anything is stored."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    event = get_gateway().verify_webhook(payload, signature, secret, tolerance=TOLERANCE_SECONDS)
    _check_event(event)
    return event


def _check_event(event: dict[str, Any]) -> None:
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


# --- receiving -----------------------------------------------------------------------------------


def receive(payload: bytes, signature: str | None) -> Outcome:
    """Handle one delivery; the view turns the outcome into the HTTP answer.

    A new event (or Stripe's retry of one that failed) is fetched, stored and applied
    (:func:`_run`). A repeat of a processed event is answered 200 without applying it again,
    and, for an event whose handler asks Stripe, without asking.
    """
    event = parse(payload, signature)
    registered = events.registration(event["type"])
    if registered is not None and registered.fetches:
        processed = db.session.execute(
            select(StripeEvent.processed_at).where(StripeEvent.stripe_id == event["id"])
        ).first()
        read_then_release()  # nothing stays open across the handler's fetch
        if processed is not None and processed[0] is not None:
            return Outcome(200, {"received": True, "duplicate": True})
    return _run(event, payload.decode("utf-8"), source=f"event:{event['id']}")


def process(event_row_id: int, *, source_prefix: str = "event") -> Outcome:
    """Run a stored event's handler again (an admin's replay, ``flask replay-event``): fetched
    and applied as on arrival; safe because every handler is idempotent."""
    row = db.session.get(StripeEvent, event_row_id)
    if row is None:
        return Outcome(404, {"received": False})
    event, text = json.loads(row.payload), row.payload
    read_then_release()
    try:
        _check_event(event)
    except WebhookPayloadInvalid as err:  # stored before events were checked on arrival
        return Outcome(400, {"received": True, "processed": False, "error": err.user_message})
    return _run(event, text, source=f"{source_prefix}:{event['id']}", replay=True)


def _run(event: dict[str, Any], text: str, *, source: str, replay: bool = False) -> Outcome:
    """Fetch (no transaction open: the handler), then store-and-apply in one unit of work; what
    the change owes Stripe is sent after its commit (:func:`.uow.after_commit`)."""
    read_then_release()
    registered = events.registration(event["type"])
    try:
        apply = registered.handler(event) if registered is not None else None
    except Exception as err:  # Stripe unreachable (or a bug): store the event with why; retried
        db.session.rollback()
        if isinstance(err, GatewayError):
            log.warning("webhook %s (%s): fetch failed: %s", event["id"], event["type"], err.code)
        else:
            log.exception("webhook %s (%s): fetch failed", event["id"], event["type"])
        _record_failure(event, text, err)
        # Stripe retries either way; 503 says it was Stripe's outage, 500 is kept for our bugs
        return Outcome(503 if isinstance(err, GatewayError) else 500, {"received": True, "processed": False})
    try:
        with unit_of_work():
            claimed = _claim(event, text, replay=replay)
            result = apply(source) if claimed and apply is not None else None
    except Exception as err:  # any failure must answer 500 so Stripe retries
        log.exception("webhook %s (%s) failed", event["id"], event["type"])
        _record_failure(event, text, err)
        return Outcome(500, {"received": True, "processed": False})
    if not claimed:
        return Outcome(200, {"received": True, "duplicate": True})
    if apply is None:
        log.info("webhook %s: %s not handled, acknowledged", event["id"], event["type"])
    elif result is None:
        log.info("webhook %s: %s is about an object we don't know; acknowledged", event["id"], event["type"])
    return Outcome(200, {"received": True, "processed": True})


def _row_values(event: dict[str, Any], text: str) -> dict[str, Any]:
    obj = event["data"]["object"]
    return dict(
        stripe_id=event["id"],
        type=event["type"],
        object_id=obj.get("id"),
        created=event["created"],
        livemode=bool(event.get("livemode")),
        payload=text,
        received_at=utcnow(),
        processed_at=utcnow(),
        attempts=1,
        error=None,
    )


def _claim(event: dict[str, Any], text: str, *, replay: bool) -> bool:
    """The transaction's first statement: store the event as processed, or take the stored row
    of an earlier failed attempt (any row, for a replay). False: another delivery of the same
    event has processed it (on PostgreSQL this waits for that delivery's commit)."""
    if insert_or_ignore(db.session, StripeEvent.__table__, _row_values(event, text), "stripe_id"):
        return True
    condition = StripeEvent.stripe_id == event["id"]
    if not replay:
        condition = condition & StripeEvent.processed_at.is_(None)
    return (
        db.session.execute(
            update(StripeEvent)
            .where(condition)
            .values(processed_at=utcnow(), error=None, attempts=StripeEvent.attempts + 1)
            .returning(StripeEvent.id)
            .execution_options(synchronize_session=False)
        ).first()
        is not None
    )


def _record_failure(event: dict[str, Any], text: str, err: Exception) -> None:
    error = f"{type(err).__name__}: {err}"[:2000]
    values = {**_row_values(event, text), "processed_at": None, "error": error}
    if not insert_or_ignore(db.session, StripeEvent.__table__, values, "stripe_id"):
        db.session.execute(
            update(StripeEvent)
            .where(StripeEvent.stripe_id == event["id"])
            .values(error=error, attempts=StripeEvent.attempts + 1)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


# --- registering the endpoint ---------------------------------------------------------------------


def register_endpoint(url: str) -> tuple[dict[str, Any], str | None]:
    """Create a webhook endpoint for ``url`` at Stripe (or the sandbox) for :data:`ENABLED_EVENTS`.

    Stripe shows an endpoint's signing secret only when it is created, so an existing endpoint
    for the same URL is replaced. Returns (endpoint, secret).
    """
    gateway = get_gateway()
    replaced = []
    for endpoint in gateway.list_webhook_endpoints():
        if endpoint.get("url") == url:
            gateway.delete_webhook_endpoint(endpoint["id"])
            replaced.append(endpoint["id"])
    endpoint = gateway.create_webhook_endpoint(
        url=url,
        enabled_events=ENABLED_EVENTS,
        idempotency_key=idempotency_key("webhook-endpoint", payload={"url": url, "replaces": replaced}),
    )
    return endpoint, endpoint.get("secret")
