"""Stripe webhooks: verify, store by event id, then process in one transaction.

1. The raw body's ``Stripe-Signature`` is checked (400 without a valid one, or when the
   timestamp is outside the tolerance).
2. The event is stored by its Stripe id before anything else (the transaction's first
   statement, unique on the id). A repeat of an event already processed answers 200 and does
   nothing.
3. Processing dispatches on the type to :mod:`.fulfilment` / :mod:`.subscriptions` in the same
   transaction, which commits the event as processed together with its effects. A failure rolls
   that back, stores the event with the error, and answers 500, so Stripe retries. Events about
   objects we don't know are logged and acknowledged.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..models import StripeEvent
from ..models.base import insert_or_ignore, utcnow
from ..stripe_gateway import get_gateway, idempotency_key
from . import fulfilment, subscriptions

log = logging.getLogger(__name__)

#: the events the store listens to (registered with the webhook endpoint)
ENABLED_EVENTS = [
    "payment_intent.succeeded", "payment_intent.processing", "payment_intent.payment_failed",
    "payment_intent.canceled", "payment_intent.requires_action",
    "checkout.session.completed", "checkout.session.expired",
    "checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed",
    "charge.succeeded", "charge.failed", "charge.refunded", "charge.dispute.created",
    "customer.subscription.created", "customer.subscription.updated",
    "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed",
]


@dataclass
class Outcome:
    status: int
    body: dict


def _handler(event_type: str) -> Callable | None:
    if event_type.startswith("payment_intent."):
        return fulfilment.apply_payment_intent
    if event_type.startswith("customer.subscription."):  # re-fetched: out-of-order safe
        return subscriptions.on_subscription_event
    if event_type in ("invoice.paid", "invoice.payment_failed"):
        return subscriptions.on_invoice_event
    if event_type.startswith("checkout.session."):
        return lambda obj, **kw: fulfilment.apply_checkout_session(obj, event_type=event_type,
                                                                   **kw)
    return {"charge.succeeded": fulfilment.apply_charge, "charge.failed": fulfilment.apply_charge,
            "charge.refunded": fulfilment.apply_refund,
            "charge.dispute.created": fulfilment.apply_dispute}.get(event_type)


def receive(payload: bytes, signature: str | None) -> Outcome:
    """Handle one delivery; the view turns the outcome into the HTTP answer.

    One transaction stores the event (first statement, unique on its Stripe id), runs its
    handler and commits both -- one commit per event. If the handler fails, that transaction is
    rolled back and the event is stored with the error in a second one, and we answer 500 so
    Stripe retries.
    """
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    event = get_gateway().verify_webhook(payload, signature, secret)  # WebhookSignatureInvalid
    db.session.commit()  # start clean: the event's INSERT opens the transaction
    values = _row_values(event, payload)
    if not insert_or_ignore(db.session, StripeEvent.__table__, values, "stripe_id"):
        db.session.rollback()  # seen before, or arriving twice right now
        return _repeat(event)
    return _run(event, source=f"event:{event['id']}", payload=payload)


def _row_values(event: dict, payload: bytes) -> dict:
    obj = (event.get("data") or {}).get("object") or {}
    return dict(stripe_id=event["id"], type=event.get("type", ""),
                object_id=obj.get("id") if isinstance(obj, dict) else None,
                created=int(event.get("created") or 0), livemode=bool(event.get("livemode")),
                payload=payload.decode("utf-8"), received_at=utcnow(), processed_at=utcnow(),
                attempts=1, error=None)


def _repeat(event: dict) -> Outcome:
    row = db.session.scalar(select(StripeEvent).where(StripeEvent.stripe_id == event["id"]))
    if row is not None and row.processed_at is not None:
        return Outcome(200, {"received": True, "duplicate": True})
    if row is None:  # the first delivery is still running: let Stripe retry this one later
        return Outcome(409, {"received": True, "processed": False})
    return process(row.id)  # an earlier attempt failed: this is Stripe's retry


def _dispatch(event: dict, source: str) -> None:
    handler = _handler(event.get("type", ""))
    if handler is None:
        log.info("webhook %s: %s not handled, acknowledged", event["id"], event.get("type"))
        return
    result = handler(event["data"]["object"], source=source, event_created=event.get("created"))
    if result is None:
        log.info("webhook %s: %s is about an object we don't know; acknowledged",
                 event["id"], event.get("type"))


def _run(event: dict, *, source: str, payload: bytes) -> Outcome:
    """Dispatch inside the transaction that stored the event; on failure store the error."""
    try:
        _dispatch(event, source)
        db.session.commit()
    except Exception as err:  # noqa: BLE001 - any failure must answer 500 so Stripe retries
        db.session.rollback()
        log.exception("webhook %s (%s) failed", event["id"], event.get("type"))
        _record_failure(event, payload, err)
        return Outcome(500, {"received": True, "processed": False})
    return Outcome(200, {"received": True, "processed": True})


def _record_failure(event: dict, payload: bytes, err: Exception) -> None:
    error = f"{type(err).__name__}: {err}"[:2000]
    values = {**_row_values(event, payload), "processed_at": None, "error": error}
    if not insert_or_ignore(db.session, StripeEvent.__table__, values, "stripe_id"):
        db.session.execute(update(StripeEvent).where(StripeEvent.stripe_id == event["id"])
                           .values(error=error, attempts=StripeEvent.attempts + 1))
    db.session.commit()


def process(event_row_id: int, *, source_prefix: str = "event") -> Outcome:
    """Run a stored event's handler again in one transaction (a retry, or an admin's replay);
    safe because every handler is idempotent."""
    db.session.commit()
    row = db.session.get(StripeEvent, event_row_id)
    event = json.loads(row.payload)
    try:
        _dispatch(event, f"{source_prefix}:{row.stripe_id}")
        db.session.execute(update(StripeEvent).where(StripeEvent.id == row.id).values(
            processed_at=utcnow(), error=None, attempts=StripeEvent.attempts + 1))
        db.session.commit()
    except Exception as err:  # noqa: BLE001 - any failure must answer 500 so Stripe retries
        db.session.rollback()
        log.exception("webhook %s (%s) failed", row.stripe_id, row.type)
        db.session.execute(update(StripeEvent).where(StripeEvent.id == row.id).values(
            error=f"{type(err).__name__}: {err}"[:2000], attempts=StripeEvent.attempts + 1))
        db.session.commit()
        return Outcome(500, {"received": True, "processed": False})
    return Outcome(200, {"received": True, "processed": True})


# --- registering the endpoint ---------------------------------------------------------------------

def register_endpoint(url: str) -> tuple[dict, str | None]:
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
        url=url, enabled_events=ENABLED_EVENTS,
        idempotency_key=idempotency_key("webhook-endpoint",
                                        payload={"url": url, "replaces": replaced}))
    return endpoint, endpoint.get("secret")
