"""Webhook event handlers, registered by event type: ``@handles("invoice.paid", ...)``.

A handler gets the verified event and runs with **no transaction open**: it fetches from
Stripe what it needs (a subscription or an invoice is always re-fetched: the event's copy may
be stale), then returns the *apply step*, ``apply(source)``, which :mod:`.webhooks` runs in the
one short unit of work that also stores the event. A handler that asks Stripe says so
(``fetches=True``): a repeat of an event already processed is then answered without asking.

The event types registered here are the ones the webhook endpoint subscribes to
(:func:`enabled_events`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models.base import utcnow
from ..stripe_gateway import StripeNotFound, get_gateway
from . import fulfilment, invoices, stripe_objects, subscription_sync

Event = dict[str, Any]
#: applies an event inside the unit of work that stores it: ``apply(source)``; returns what it
#: changed (None: the event is about an object we don't know)
Apply = Callable[[str], object]
#: fetches what the event needs (no transaction open) and returns its apply step (None: nothing)
Handler = Callable[[Event], Apply | None]


@dataclass(frozen=True)
class Registration:
    handler: Handler
    fetches: bool  # the handler asks Stripe before its apply step


_registry: dict[str, Registration] = {}


def handles(*event_types: str, fetches: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``event_types`` (one handler each)."""

    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            if event_type in _registry:
                raise ValueError(f"{event_type} already has a handler")
            _registry[event_type] = Registration(handler, fetches)
        return handler

    return register


def registration(event_type: str) -> Registration | None:
    """The handler registered for ``event_type`` (None: we don't handle it)."""
    return _registry.get(event_type)


def enabled_events() -> list[str]:
    """Every event type with a handler, in registration order."""
    return list(_registry)


# --- the handlers ----------------------------------------------------------------------------------


@handles(
    "payment_intent.succeeded",
    "payment_intent.processing",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
)
def payment_intent(event: Event) -> Apply:
    obj, created = event["data"]["object"], event["created"]
    return lambda source: fulfilment.apply_payment_intent(obj, source=source, event_created=created)


@handles(
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
)
def checkout_session(event: Event) -> Apply:
    obj, created, event_type = event["data"]["object"], event["created"], event["type"]
    return lambda source: fulfilment.apply_checkout_session(
        obj, source=source, event_created=created, event_type=event_type
    )


@handles("charge.succeeded", "charge.failed")
def charge(event: Event) -> Apply:
    obj, created = event["data"]["object"], event["created"]
    return lambda source: fulfilment.apply_charge(obj, source=source, event_created=created)


@handles("charge.refunded")
def refund(event: Event) -> Apply:
    obj, created = event["data"]["object"], event["created"]
    return lambda source: fulfilment.apply_refund(obj, source=source, event_created=created)


@handles("charge.dispute.created")
def dispute(event: Event) -> Apply:
    obj, created = event["data"]["object"], event["created"]
    return lambda source: fulfilment.apply_dispute(obj, source=source, event_created=created)


@handles(
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted", fetches=True
)
def subscription(event: Event) -> Apply:
    """Stripe's current state of the subscription (out-of-order safe: ``fetched_at``)."""
    obj = event["data"]["object"]
    asked = utcnow()
    try:
        sub = get_gateway().retrieve_subscription(obj["id"])
    except StripeNotFound:
        sub = obj  # deleted at Stripe for good: the event's copy is all there is
    received = utcnow()
    return lambda source: subscription_sync.apply_subscription(sub, source=source, fetched_at=received, asked_at=asked)


@handles("invoice.paid", "invoice.payment_failed", fetches=True)
def invoice(event: Event) -> Apply | None:
    """The invoice (paid: its order, points once) and its subscription (``active`` /
    ``past_due``), both as Stripe has them now. Not a subscription's invoice: nothing to do."""
    obj = event["data"]["object"]
    sub_id = stripe_objects.subscription_of_invoice(obj)
    if not sub_id:
        return None
    gateway = get_gateway()
    fetched_invoice = gateway.retrieve_invoice(obj["id"])
    asked = utcnow()
    sub = gateway.retrieve_subscription(sub_id)
    received = utcnow()

    def apply(source: str) -> object:
        # locks in the same order as everywhere else: the order first, then the subscription
        order = invoices.apply_invoice(fetched_invoice, source=source)
        row = subscription_sync.apply_subscription(sub, source=source, fetched_at=received, asked_at=asked)
        return order or row

    return apply
