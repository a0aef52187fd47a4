"""Subscriptions through the official SDK, renewals driven by the sandbox clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import stripe

DAY = 86400


@pytest.fixture
def plans(client):
    made = {}
    for name, amount in (("Starter", 1000), ("Advanced", 2500), ("Professional", 5000)):
        made[name] = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": amount,
                "product_data": {"name": name},
                "recurring": {"interval": "month"},
                "lookup_key": name.lower(),
            }
        )
    return made


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"email": "subscriber@shop.test"})


def subscribe(client, customer, price, pm="pm_card_visa", **extra) -> stripe.Subscription:
    """Subscribe as the store does: default_incomplete, then pay the first invoice's PI."""
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": ["latest_invoice.confirmation_secret", "latest_invoice.payments"],
            **extra,
        }
    )
    pi_id = sub.latest_invoice.payments.data[0].payment.payment_intent
    client.v1.payment_intents.confirm(pi_id, params={"payment_method": pm})
    return client.v1.subscriptions.retrieve(sub.id)


def months_later(ts: int, n: int) -> int:
    start = datetime.fromtimestamp(ts, UTC)
    year, month = divmod(start.month - 1 + n, 12)
    import calendar

    day = min(start.day, calendar.monthrange(start.year + year, month + 1)[1])
    return int(start.replace(year=start.year + year, month=month + 1, day=day).timestamp())


def test_default_incomplete_then_paying_the_pi_activates(client, sandbox, plans, customer, endpoint, receiver):
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": plans["Starter"].id}],
            "payment_behavior": "default_incomplete",
            "metadata": {"user": "42"},
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": ["latest_invoice.confirmation_secret", "latest_invoice.payments"],
        }
    )
    assert sub.status == "incomplete"
    invoice = sub.latest_invoice
    assert (invoice.status, invoice.billing_reason, invoice.amount_due) == ("open", "subscription_create", 1000)
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.confirmation_secret.type == "payment_intent"
    pi_id = invoice.payments.data[0].payment.payment_intent
    assert invoice.confirmation_secret.client_secret.startswith(pi_id + "_secret_")
    item = sub["items"].data[0]
    assert item.current_period_start == sub.billing_cycle_anchor == sub.start_date
    assert item.current_period_end == months_later(sub.billing_cycle_anchor, 1)
    # without expand, confirmation_secret and payments are absent
    plain = client.v1.invoices.retrieve(invoice.id)
    assert "confirmation_secret" not in plain and "payments" not in plain

    pi = client.v1.payment_intents.confirm(pi_id, params={"payment_method": "pm_card_visa"})
    assert pi.status == "succeeded"
    sub = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert sub.status == "active"
    assert sub.default_payment_method == pi.payment_method
    assert sub.latest_invoice.status == "paid" and sub.latest_invoice.amount_paid == 1000
    payments = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert [(p.status, p.amount_paid) for p in payments] == [("paid", 1000)]

    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "customer.subscription.updated" in r.types())
    events = receiver.events()
    created = next(e for e in events if e["type"] == "customer.subscription.created")
    assert created["data"]["object"]["status"] == "incomplete"
    updated = [e for e in events if e["type"] == "customer.subscription.updated"]
    assert updated[-1]["data"]["object"]["status"] == "active"
    assert updated[-1]["data"]["previous_attributes"]["status"] == "incomplete"
    for expected in ("invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"):
        assert expected in receiver.types()


def test_three_renewals_through_the_clock(client, sandbox, plans, customer):
    sub = subscribe(client, customer, plans["Starter"])
    anchor = sub.billing_cycle_anchor
    sandbox.advance_clock(months_later(anchor, 3) - anchor + 60)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle"] * 3 + ["subscription_create"]
    assert all(i.status == "paid" and i.amount_paid == 1000 for i in invoices)
    cycle = sorted(invoices[:3], key=lambda i: i.period_end)
    for n, invoice in enumerate(cycle, start=1):
        (line,) = invoice.lines.data
        assert line.period.start == months_later(anchor, n)
        assert line.period.end == months_later(anchor, n + 1)
        assert invoice.period_end == months_later(anchor, n)
        assert line.pricing.price_details.price == plans["Starter"].id
        assert line.parent.type == "subscription_item_details"
        assert line.parent.subscription_item_details.proration is False
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_start == months_later(anchor, 3)
    assert sub["items"].data[0].current_period_end == months_later(anchor, 4)
    paid = client.v1.events.list(params={"type": "invoice.paid", "limit": 100}).data
    assert len(paid) == 4
    # each renewal's events carry the renewal's time, not the time the clock was advanced
    renewal_times = sorted(e.created for e in paid)[1:]
    assert renewal_times == [months_later(anchor, n) for n in (1, 2, 3)]
    updates = client.v1.events.list(params={"type": "customer.subscription.updated", "limit": 100}).data
    period_moves = [e for e in updates if "items" in (e.data.previous_attributes or {})]
    assert len(period_moves) == 3


def test_failed_renewal_goes_past_due_then_paying_reactivates(client, sandbox, plans, customer):
    sub = subscribe(client, customer, plans["Starter"])
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})
    sandbox.advance_clock(sub["items"].data[0].current_period_end - sub.billing_cycle_anchor + 5)
    sub = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert sub.status == "past_due"
    invoice = sub.latest_invoice
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("open", 1, 1000)
    failed = client.v1.events.list(params={"type": "invoice.payment_failed"}).data
    assert [e.data.object.id for e in failed] == [invoice.id]
    with pytest.raises(stripe.CardError) as raised:
        client.v1.invoices.pay(invoice.id)
    assert raised.value.code == "card_declined"
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 1000, 0)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    updates = client.v1.events.list(params={"type": "customer.subscription.updated"}).data
    assert updates[0].data.object.status == "active"
    assert updates[0].data.previous_attributes.status == "past_due"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
    assert "already paid" in refused.value.user_message


def test_customer_default_payment_method_is_used_for_renewals(client, sandbox, plans, customer):
    pm = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": plans["Advanced"].id}]})
    assert sub.status == "active"  # allow_incomplete: charged now with the default card
    sandbox.advance_clock(32 * DAY)
    invoices = client.v1.invoices.list(params={"customer": customer.id, "status": "paid"}).data
    assert len(invoices) == 2


def test_cancel_at_period_end_resume_then_cancel(client, sandbox, plans, customer, endpoint, receiver):
    sub = subscribe(client, customer, plans["Starter"])
    end = sub["items"].data[0].current_period_end
    scheduled = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert scheduled.cancel_at_period_end is True and scheduled.cancel_at == end
    assert scheduled.status == "active"
    resumed = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert resumed.cancel_at_period_end is False and resumed.cancel_at is None
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    sandbox.advance_clock(end - sub.billing_cycle_anchor + 5)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.ended_at == end and sub.canceled_at is not None
    assert sub.cancellation_details.reason == "cancellation_requested"
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "customer.subscription.deleted" in r.types())
    updates = [e for e in receiver.events() if e["type"] == "customer.subscription.updated"]
    flags = [
        (e["data"]["object"]["cancel_at_period_end"], e["data"]["previous_attributes"].get("cancel_at_period_end"))
        for e in updates
        if "cancel_at_period_end" in e["data"]["previous_attributes"]
    ]
    assert flags == [(True, False), (False, True), (True, False)]
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    listed = client.v1.subscriptions.list(params={"customer": customer.id, "status": "canceled"})
    assert [s.id for s in listed.data] == [sub.id]


def test_immediate_cancel(client, sandbox, plans, customer):
    sub = subscribe(client, customer, plans["Starter"])
    canceled = client.v1.subscriptions.cancel(sub.id, params={"cancellation_details": {"comment": "admin"}})
    assert canceled.status == "canceled"
    assert canceled.cancellation_details.comment == "admin"
    assert canceled.ended_at == canceled.canceled_at
    sandbox.advance_clock(40 * DAY)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    assert [e.type for e in client.v1.events.list(params={"type": "customer.subscription.deleted"}).data] == [
        "customer.subscription.deleted"
    ]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(sub.id)


def test_plan_change_with_prorations_matches_the_preview(client, sandbox, plans, customer):
    sub = subscribe(client, customer, plans["Starter"])
    item = sub["items"].data[0]
    sandbox.advance_clock(10 * DAY)
    proration_date = item.current_period_start + 10 * DAY + 100
    preview = client.v1.invoices.create_preview(
        params={
            "customer": customer.id,
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "price": plans["Advanced"].id}],
                "proration_date": proration_date,
            },
        }
    )
    proration_lines = [ln for ln in preview.lines.data if ln.parent.subscription_item_details.proration]
    assert len(proration_lines) == 2
    preview_proration = sum(ln.amount for ln in proration_lines)
    share = (item.current_period_end - proration_date) / (item.current_period_end - item.current_period_start)
    assert preview_proration == round(2500 * share) - round(1000 * share)
    assert preview.total == preview_proration + 2500

    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": plans["Advanced"].id}],
            "proration_behavior": "create_prorations",
            "proration_date": proration_date,
        },
    )
    assert updated["items"].data[0].price.id == plans["Advanced"].id
    assert updated["items"].data[0].id == item.id
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    event = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert event.data.previous_attributes["items"]["data"][0]["price"]["id"] == plans["Starter"].id

    sandbox.advance_clock(item.current_period_end - item.current_period_start)
    renewal = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    renewal_prorations = [ln for ln in renewal.lines.data if ln.parent.subscription_item_details.proration]
    assert sum(ln.amount for ln in renewal_prorations) == preview_proration
    assert renewal.total == preview.total
    assert sorted(ln.description for ln in renewal_prorations) == sorted(ln.description for ln in proration_lines)


def test_plan_change_always_invoice_charges_now(client, sandbox, plans, customer):
    sub = subscribe(client, customer, plans["Starter"])
    item = sub["items"].data[0]
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": plans["Professional"].id}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    assert 3900 <= invoice.amount_paid <= 4000
    none = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "price": plans["Starter"].id}], "proration_behavior": "none"}
    )
    assert none.latest_invoice == invoice.id


def test_allow_and_error_if_incomplete(client, sandbox, plans, customer):
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": plans["Starter"].id}],
            "default_payment_method": failing.id,
            "payment_behavior": "allow_incomplete",
        }
    )
    assert sub.status == "incomplete"
    before = len(client.v1.subscriptions.list(params={"status": "all"}).data)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": plans["Starter"].id}],
                "default_payment_method": failing.id,
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert raised.value.http_status == 402
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == before


def test_incomplete_expires_after_23_hours(client, sandbox, plans, customer):
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": plans["Starter"].id}],
            "payment_behavior": "default_incomplete",
        }
    )
    sandbox.advance_clock(22 * 3600)
    assert client.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    sandbox.advance_clock(2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert sub.status == "incomplete_expired"
    assert sub.latest_invoice.status == "void"


def test_create_refusals_and_lookups(client, plans, customer):
    one_time = client.v1.prices.create(params={"currency": "usd", "unit_amount": 500, "product_data": {"name": "Gift"}})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": one_time.id}]})
    assert raised.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(params={"customer": "cus_missing", "items": [{"price": plans["Starter"].id}]})
    assert raised.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.retrieve("sub_missing")
    assert raised.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": plans["Starter"].id}], "trial_period_days": 7}
        )
    assert raised.value.code == "parameter_unsupported"


def test_list_filters_and_items(client, plans, customer):
    a = subscribe(client, customer, plans["Starter"])
    b = subscribe(client, customer, plans["Advanced"])
    by_price = client.v1.subscriptions.list(params={"price": plans["Advanced"].id}).data
    assert [s.id for s in by_price] == [b.id]
    active = client.v1.subscriptions.list(params={"status": "active"}).data
    assert {s.id for s in active} == {a.id, b.id}
    items = client.v1.subscription_items.list(params={"subscription": a.id}).data
    assert [i.id for i in items] == [a["items"].data[0].id]
    item = client.v1.subscription_items.retrieve(items[0].id)
    assert item.subscription == a.id and item.plan.amount == 1000
