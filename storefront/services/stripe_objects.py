"""Pure readers of Stripe objects: what a PaymentIntent, Checkout Session, invoice or subscription
says, in our terms.

Each function takes a Stripe object as the API returns it (a dict, as the gateway hands it over,
in the API version the SDK pins: invoices carry ``parent.subscription_details``, ``payments`` and
``confirmation_secret``; a subscription's period lives on its items) and only reads it: no
database, no Flask, no network. A field Stripe may send expanded (an object) or not (its id) is
read either way (:func:`stripe_id`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

from ..models.order import OrderStatus

#: a Stripe API object, as the gateway returns it
StripeObject: TypeAlias = Mapping[str, Any]

#: what the buyer reads when Stripe declined without a message of its own
DECLINED = "Your payment was declined."


def stripe_id(value: Any) -> str | None:
    """The id of an expandable field: ``"pi_1"`` or ``{"id": "pi_1", ...}`` -> ``"pi_1"``."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else None


def ts(value: int | None) -> datetime | None:
    """A Stripe timestamp (Unix seconds) as an aware UTC datetime; ``None`` / ``0`` -> None."""
    return datetime.fromtimestamp(int(value), UTC) if value else None


# --- payments -----------------------------------------------------------------------------------


def status_of_payment_intent(pi: StripeObject) -> tuple[OrderStatus, str | None, str | None]:
    """Our order status for a PaymentIntent, with the failure code and buyer message if any."""
    status = pi.get("status")
    if status == "succeeded":
        return OrderStatus.PAID, None, None
    if status == "processing":
        return OrderStatus.PROCESSING, None, None
    if status == "requires_action":
        return OrderStatus.REQUIRES_ACTION, None, None
    if status == "canceled":
        return OrderStatus.CANCELED, None, None
    error = pi.get("last_payment_error")
    if status == "requires_payment_method" and error:
        return (OrderStatus.FAILED, error.get("decline_code") or error.get("code"), error.get("message") or DECLINED)
    return OrderStatus.PENDING, None, None


def status_of_checkout_session(session: StripeObject, event_type: str | None = None) -> OrderStatus:
    """Our order status for a Checkout Session (``event_type``: the event that brought it, since
    only the event tells an asynchronous debit that failed from one still on its way)."""
    if event_type == "checkout.session.async_payment_failed":
        return OrderStatus.FAILED
    if session.get("status") == "expired":
        return OrderStatus.EXPIRED
    if session.get("status") == "complete":
        return OrderStatus.PROCESSING if session.get("payment_status") == "unpaid" else OrderStatus.PAID
    return OrderStatus.PENDING


# --- invoices -----------------------------------------------------------------------------------


def _subscription_details(invoice: StripeObject) -> Mapping[str, Any]:
    details: Mapping[str, Any] = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details


def subscription_of_invoice(invoice: StripeObject) -> str | None:
    """The subscription an invoice bills (None for a one-off invoice)."""
    return stripe_id(_subscription_details(invoice).get("subscription"))


def invoice_metadata(invoice: StripeObject) -> Mapping[str, str]:
    """The subscription's metadata as copied onto its invoice (``order_id`` when we started it)."""
    metadata: Mapping[str, str] = _subscription_details(invoice).get("metadata") or {}
    return metadata


def invoice_payment_intent(invoice: StripeObject) -> str | None:
    """The PaymentIntent paying an invoice (``payments`` expanded, or the confirmation secret)."""
    for payment in (invoice.get("payments") or {}).get("data") or []:
        pi = stripe_id((payment.get("payment") or {}).get("payment_intent"))
        if pi:
            return pi
    secret: str = (invoice.get("confirmation_secret") or {}).get("client_secret") or ""
    return secret.split("_secret_")[0] or None


def invoice_amount(invoice: StripeObject) -> int:
    """What an invoice charged (paid) or asks for (any other status), in minor units."""
    if invoice.get("status") == "paid":
        return int(invoice.get("amount_paid") or 0)
    return int(invoice.get("amount_due") or 0)


def is_plan_change_invoice(invoice: StripeObject) -> bool:
    """An upgrade's proration invoice (``always_invoice``): money for the plan change only.
    Points follow the monthly invoices (the next one credits the new plan's points), so it
    credits none -- else an upgrade-downgrade round trip would mint a month of points."""
    return invoice.get("billing_reason") == "subscription_update"


def line_price_id(line: StripeObject) -> str | None:
    """The Stripe price an invoice line bills (``pricing.price_details.price``; older: ``price``)."""
    pricing = line.get("pricing") or {}
    return stripe_id((pricing.get("price_details") or {}).get("price")) or stripe_id(line.get("price"))


def is_proration(line: StripeObject) -> bool:
    """A line for part of a period (a plan change), not a whole period of the plan."""
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def plan_price_ids(invoice: StripeObject) -> list[str]:
    """The Stripe prices an invoice bills, the plan's first: whole-period lines, then proration
    lines from the largest charge down (a proration-only invoice -- an upgrade charged now --
    bills the new plan: its charge line comes before the credit for the old one)."""
    lines = (invoice.get("lines") or {}).get("data") or []
    whole = [line for line in lines if not is_proration(line)]
    prorated = sorted((line for line in lines if is_proration(line)), key=lambda line: -int(line.get("amount") or 0))
    return [price for price in map(line_price_id, whole + prorated) if price]


# --- subscriptions ------------------------------------------------------------------------------


def _first_item(sub: StripeObject) -> Mapping[str, Any] | None:
    items = (sub.get("items") or {}).get("data") or []
    return items[0] if items else None


def subscription_price_id(sub: StripeObject) -> str | None:
    """The Stripe price of a subscription's (only) item."""
    item = _first_item(sub)
    return stripe_id(item.get("price")) if item else None


def subscription_period(sub: StripeObject) -> tuple[datetime | None, datetime | None] | None:
    """(start, end) of the current period, from the subscription's item; None without items."""
    item = _first_item(sub)
    if item is None:
        return None
    return ts(item.get("current_period_start")), ts(item.get("current_period_end"))
