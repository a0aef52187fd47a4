"""services/stripe_objects.py: reading Stripe objects in our terms. Pure functions, so plain unit
tests over plain dicts shaped as the API (version the SDK pins) returns them -- trimmed to the
fields that matter, with the values the sandbox and Stripe's own fixtures show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from storefront.models.order import OrderStatus
from storefront.services.stripe_objects import (
    DECLINED,
    invoice_amount,
    invoice_metadata,
    invoice_payment_intent,
    is_plan_change_invoice,
    is_proration,
    line_price_id,
    plan_price_ids,
    status_of_checkout_session,
    status_of_payment_intent,
    stripe_id,
    subscription_of_invoice,
    subscription_period,
    subscription_price_id,
    ts,
)

S = OrderStatus


def payment_intent(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "pi_3QxYz",
        "object": "payment_intent",
        "amount": 1999,
        "amount_received": 0,
        "currency": "usd",
        "status": status,
        "last_payment_error": None,
        "latest_charge": None,
        "metadata": {"order_id": "ord_abc"},
        **fields,
    }


def line(price: str, amount: int, *, proration: bool = False, sub_item: bool = True) -> dict[str, Any]:
    details = {
        "invoice_item": None,
        "proration": proration,
        "proration_details": {"credited_items": None},
        "subscription": "sub_1",
        "subscription_item": "si_1",
    }
    parent = (
        {"type": "subscription_item_details", "subscription_item_details": details, "invoice_item_details": None}
        if sub_item
        else {"type": "invoice_item_details", "invoice_item_details": details, "subscription_item_details": None}
    )
    return {
        "id": f"il_{price}_{amount}",
        "object": "line_item",
        "amount": amount,
        "currency": "usd",
        "parent": parent,
        "period": {"start": 1767225600, "end": 1769904000},
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price, "product": "prod_1"},
            "unit_amount_decimal": str(abs(amount)),
        },
    }


def invoice(*lines: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": "in_1Q",
        "object": "invoice",
        "status": "paid",
        "amount_due": 900,
        "amount_paid": 900,
        "currency": "usd",
        "customer": "cus_1",
        "billing_reason": "subscription_cycle",
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": "sub_1", "metadata": {"order_id": "ord_abc"}},
        },
        "lines": {"object": "list", "data": list(lines), "has_more": False},
        **fields,
    }


# --- ids and times ------------------------------------------------------------------------------


def test_stripe_id_reads_an_id_or_an_expanded_object() -> None:
    assert stripe_id("ch_1") == "ch_1"
    assert stripe_id({"id": "ch_1", "object": "charge"}) == "ch_1"
    assert stripe_id(None) is None
    assert stripe_id({"object": "charge"}) is None


def test_ts_is_an_aware_utc_datetime() -> None:
    assert ts(1767225600) == datetime(2026, 1, 1, tzinfo=UTC)
    assert ts(None) is None
    assert ts(0) is None


# --- PaymentIntents and Checkout Sessions -------------------------------------------------------


@pytest.mark.parametrize(
    ("stripe_status", "ours"),
    [
        ("succeeded", S.PAID),
        ("processing", S.PROCESSING),
        ("requires_action", S.REQUIRES_ACTION),
        ("canceled", S.CANCELED),
        ("requires_payment_method", S.PENDING),
        ("requires_confirmation", S.PENDING),
        ("requires_capture", S.PENDING),
    ],
)
def test_status_of_payment_intent(stripe_status: str, ours: OrderStatus) -> None:
    assert status_of_payment_intent(payment_intent(stripe_status)) == (ours, None, None)


def test_a_declined_payment_intent_is_failed_with_the_decline_code_and_message() -> None:
    declined = payment_intent(
        "requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    )
    assert status_of_payment_intent(declined) == (S.FAILED, "insufficient_funds", "Your card has insufficient funds.")
    bare = payment_intent("requires_payment_method", last_payment_error={"type": "card_error", "code": "card_declined"})
    assert status_of_payment_intent(bare) == (S.FAILED, "card_declined", DECLINED)


@pytest.mark.parametrize(
    ("session", "event_type", "ours"),
    [
        ({"status": "open", "payment_status": "unpaid"}, None, S.PENDING),
        ({"status": "complete", "payment_status": "paid"}, None, S.PAID),
        ({"status": "complete", "payment_status": "no_payment_required"}, None, S.PAID),
        ({"status": "complete", "payment_status": "unpaid"}, None, S.PROCESSING),  # a debit on its way
        ({"status": "expired", "payment_status": "unpaid"}, None, S.EXPIRED),
        ({"status": "complete", "payment_status": "unpaid"}, "checkout.session.async_payment_failed", S.FAILED),
        ({"status": "complete", "payment_status": "paid"}, "checkout.session.async_payment_succeeded", S.PAID),
    ],
)
def test_status_of_checkout_session(session: dict[str, Any], event_type: str | None, ours: OrderStatus) -> None:
    assert status_of_checkout_session({"id": "cs_test_1", "object": "checkout.session", **session}, event_type) == ours


# --- invoices -----------------------------------------------------------------------------------


def test_subscription_and_metadata_of_an_invoice() -> None:
    paid = invoice(line("price_starter", 900))
    assert subscription_of_invoice(paid) == "sub_1"
    assert invoice_metadata(paid) == {"order_id": "ord_abc"}
    one_off = invoice(line("price_starter", 900), parent=None)
    assert subscription_of_invoice(one_off) is None
    assert invoice_metadata(one_off) == {}


def test_invoice_payment_intent_from_payments_or_the_confirmation_secret() -> None:
    paid = invoice(
        payments={
            "object": "list",
            "data": [
                {
                    "id": "inpay_1",
                    "object": "invoice_payment",
                    "invoice": "in_1Q",
                    "status": "paid",
                    "payment": {"type": "payment_intent", "payment_intent": "pi_paid"},
                }
            ],
        }
    )
    assert invoice_payment_intent(paid) == "pi_paid"
    expanded = invoice(
        payments={
            "object": "list",
            "data": [
                {"payment": {"type": "payment_intent", "payment_intent": {"id": "pi_exp", "object": "payment_intent"}}}
            ],
        }
    )
    assert invoice_payment_intent(expanded) == "pi_exp"
    open_ = invoice(
        status="open", confirmation_secret={"type": "payment_intent", "client_secret": "pi_open_secret_abc"}
    )
    assert invoice_payment_intent(open_) == "pi_open"
    assert invoice_payment_intent(invoice(status="draft")) is None


def test_invoice_amount_is_what_it_charged_or_asks_for() -> None:
    assert invoice_amount(invoice(amount_paid=900, amount_due=900)) == 900
    assert invoice_amount(invoice(status="open", amount_paid=0, amount_due=1500)) == 1500
    assert invoice_amount(invoice(status="open", amount_due=None)) == 0


def test_a_plan_change_invoice_is_one_for_a_subscription_update() -> None:
    assert is_plan_change_invoice(invoice(billing_reason="subscription_update"))
    assert not is_plan_change_invoice(invoice(billing_reason="subscription_cycle"))
    assert not is_plan_change_invoice(invoice(billing_reason="subscription_create"))


def test_line_readers() -> None:
    whole, prorated = line("price_pro", 2900), line("price_pro", 1450, proration=True)
    assert line_price_id(whole) == "price_pro"
    assert line_price_id({"price": {"id": "price_legacy", "object": "price"}}) == "price_legacy"
    assert line_price_id({"pricing": {"type": "price_details", "price_details": None}}) is None
    assert not is_proration(whole) and is_proration(prorated)
    assert is_proration(line("price_pro", 1450, proration=True, sub_item=False))  # an invoice item


def test_plan_price_ids_put_the_plan_first() -> None:
    """A renewal bills the plan's whole period; an upgrade charged now has only proration lines:
    the charge for the new plan (largest) before the credit for the old one (negative)."""
    renewal = invoice(line("price_pro", 2900))
    assert plan_price_ids(renewal) == ["price_pro"]
    upgrade = invoice(
        line("price_starter", -450, proration=True),
        line("price_pro", 1450, proration=True),
        billing_reason="subscription_update",
    )
    assert plan_price_ids(upgrade) == ["price_pro", "price_starter"]
    mixed = invoice(
        line("price_starter", -450, proration=True), line("price_pro", 2900), line("price_pro", 1450, proration=True)
    )
    assert plan_price_ids(mixed) == ["price_pro", "price_pro", "price_starter"]
    assert plan_price_ids(invoice()) == []


# --- subscriptions ------------------------------------------------------------------------------


def test_subscription_price_and_period_come_from_its_item() -> None:
    sub = {
        "id": "sub_1",
        "object": "subscription",
        "status": "active",
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "current_period_start": 1767225600,
                    "current_period_end": 1769904000,
                    "price": {"id": "price_pro", "object": "price"},
                }
            ],
        },
    }
    assert subscription_price_id(sub) == "price_pro"
    assert subscription_period(sub) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    empty = {"id": "sub_2", "object": "subscription", "items": {"object": "list", "data": []}}
    assert subscription_price_id(empty) is None
    assert subscription_period(empty) is None
