"""Invoices, invoice payments, previews, hosted invoice page and billing portal sessions."""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING, cast

import pytest
import stripe

if TYPE_CHECKING:
    from stripe.params import PaymentIntentConfirmParams

DAY = 86400


@pytest.fixture
def price(client):
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1999,
            "product_data": {"name": "Starter"},
            "recurring": {"interval": "month"},
        }
    )


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"email": "inv@shop.test", "name": "Ivy"})


def active_subscription(client, customer, price, quantity=1):
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    return client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": quantity}],
            "default_payment_method": pm.id,
            "expand": ["latest_invoice.payments"],
        }
    )


def test_invoice_shape(client, sandbox, price, customer):
    sub = active_subscription(client, customer, price, quantity=2)
    assert sub.status == "active"
    invoice = sub.latest_invoice
    assert invoice.status == "paid"
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (
        3998,
        3998,
        3998,
        3998,
        0,
    )
    assert invoice.customer == customer.id
    assert invoice.customer_email == "inv@shop.test"
    assert invoice.number.endswith("-0001")
    assert invoice.collection_method == "charge_automatically"
    assert invoice.status_transitions.paid_at is not None
    assert invoice.invoice_pdf is None
    assert invoice.hosted_invoice_url == f"{sandbox.url}/i/{invoice.id}"
    (line,) = invoice.lines.data
    assert (line.object, line.amount, line.quantity) == ("line_item", 3998, 2)
    assert line.description == "2 × Starter (at $19.99 / month)"
    assert line.pricing.type == "price_details"
    assert line.pricing.price_details.price == price.id
    assert line.parent.subscription_item_details.subscription_item == sub["items"].data[0].id
    assert line.invoice == invoice.id
    (payment,) = invoice.payments.data
    assert (payment.object, payment.status, payment.amount_paid, payment.is_default) == (
        "invoice_payment",
        "paid",
        3998,
        True,
    )
    pi = client.v1.payment_intents.retrieve(payment.payment.payment_intent)
    assert pi.status == "succeeded" and pi.amount == 3998 and pi.customer == customer.id
    assert client.v1.invoice_payments.retrieve(payment.id).invoice == invoice.id
    lines = client.v1.invoices.line_items.list(invoice.id)
    assert [ln.id for ln in lines.data] == [line.id]
    # a paid invoice has no confirmation secret left to use
    again = client.v1.invoices.retrieve(invoice.id, params={"expand": ["confirmation_secret"]})
    assert again.confirmation_secret is None
    with urllib.request.urlopen(invoice.hosted_invoice_url, timeout=10) as page:
        text = page.read().decode()
    assert invoice.number in text and "paid" in text and "$39.98" in text


def test_list_invoices_filters(client, sandbox, price, customer):
    sub = active_subscription(client, customer, price)
    other = client.v1.customers.create(params={"email": "other@shop.test"})
    client.v1.subscriptions.create(
        params={"customer": other.id, "items": [{"price": price.id}], "payment_behavior": "default_incomplete"}
    )
    assert [i.customer for i in client.v1.invoices.list(params={"customer": customer.id}).data] == [customer.id]
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    assert [i.customer for i in client.v1.invoices.list(params={"status": "open"}).data] == [other.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.retrieve("in_missing")
    assert raised.value.http_status == 404


def test_pay_open_invoice_and_refusals(client, sandbox, price, customer):
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "payment_behavior": "default_incomplete"}
    )
    invoice_id = sub.latest_invoice
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.pay(invoice_id)
    assert "default_payment_method" in raised.value.user_message
    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(invoice_id, params={"payment_method": "pm_card_chargeDeclined"})
    assert declined.value.code == "card_declined"
    invoice = client.v1.invoices.retrieve(invoice_id)
    assert (invoice.status, invoice.attempt_count, invoice.attempted) == ("open", 1, True)
    assert client.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    paid = client.v1.invoices.pay(invoice_id, params={"payment_method": "pm_card_visa"})
    assert paid.status == "paid" and paid.attempt_count == 2
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(invoice_id, params={"payment_method": "pm_card_visa"})


def test_preview_of_next_renewal_and_of_a_new_subscription(client, sandbox, price, customer):
    sub = active_subscription(client, customer, price)
    item = sub["items"].data[0]
    upcoming = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert upcoming.id.startswith("upcoming_")
    assert upcoming.total == 1999 and upcoming.billing_reason == "subscription_cycle"
    assert upcoming.lines.data[0].period.start == item.current_period_end
    new = client.v1.invoices.create_preview(
        params={"customer": customer.id, "subscription_details": {"items": [{"price": price.id, "quantity": 3}]}}
    )
    assert new.total == 5997 and new.billing_reason == "subscription_create"
    assert (
        client.v1.invoices.list(params={"customer": customer.id}).data[0].id == sub.latest_invoice.id
    )  # previews are not saved


def test_preview_always_invoice_shows_only_the_prorations(client, sandbox, price, customer):
    sub = active_subscription(client, customer, price)
    item = sub["items"].data[0]
    bigger = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 4999,
            "product_data": {"name": "Pro"},
            "recurring": {"interval": "month"},
        }
    )
    sandbox.advance_clock(5 * DAY)
    at = item.current_period_start + 5 * DAY
    preview = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "price": bigger.id}],
                "proration_date": at,
                "proration_behavior": "always_invoice",
            },
        }
    )
    assert preview.billing_reason == "subscription_update"
    assert [ln.amount < 0 for ln in preview.lines.data] == [True, False]
    assert preview.lines.data[0].description.startswith("Unused time on 1 × Starter after")
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": bigger.id}],
            "proration_date": at,
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    assert updated.latest_invoice.total == preview.total
    assert updated.latest_invoice.status == "paid"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.invoices.create_preview(
            params={
                "subscription": sub.id,
                "subscription_details": {
                    "items": [{"id": item.id, "price": price.id}],
                    "proration_date": item.current_period_start - DAY,
                },
            }
        )
    assert raised.value.param == "subscription_details[proration_date]"


def test_billing_portal_session(client, sandbox, price, customer):
    active_subscription(client, customer, price)
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://shop.test/account"}
    )
    assert session.object == "billing_portal.session"
    assert session.customer == customer.id and session.return_url == "https://shop.test/account"
    assert session.url.startswith(f"{sandbox.url}/p/session/")
    with urllib.request.urlopen(session.url, timeout=10) as page:
        text = page.read().decode()
    assert "Starter" in text and "active" in text and 'href="https://shop.test/account"' in text
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_missing"})
    assert raised.value.code == "resource_missing"


def test_browser_decline_on_first_invoice_is_an_invoice_payment_failure(client, sandbox, price, customer):
    """Stripe.js confirms the first invoice's PaymentIntent with the publishable key; a decline
    leaves the intent in requires_payment_method and must still fail the invoice's attempt."""
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "payment_behavior": "default_incomplete",
            "expand": ["latest_invoice.confirmation_secret"],
        }
    )
    secret = sub.latest_invoice.confirmation_secret.client_secret
    browser = stripe.StripeClient("pk_test_browser", base_addresses={"api": sandbox.url}, max_network_retries=0)
    pi_id = secret.split("_secret_")[0]
    with pytest.raises(stripe.CardError):
        # Stripe.js sends client_secret, which the server SDK's TypedDict does not list.
        browser.v1.payment_intents.confirm(
            pi_id,
            params=cast(
                "PaymentIntentConfirmParams", {"client_secret": secret, "payment_method": "pm_card_chargeDeclined"}
            ),
        )
    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data]
    assert "invoice.payment_failed" in types
    assert client.v1.subscriptions.retrieve(sub.id).status == "incomplete"
