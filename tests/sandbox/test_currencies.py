"""Multi-currency prices through the official SDK: ``currency_options`` (shown only when expanded),
currencies and minimum amounts as Stripe checks them, PaymentIntents in USD, EUR and RON, Checkout
Sessions and subscriptions charged in a price's other currency, and a customer's recurring
billing currency."""

from __future__ import annotations

import urllib.request

import pytest
import stripe

from .helpers import present
from .test_checkout import pay


@pytest.fixture
def plan(client):
    """A monthly price in USD with EUR and RON amounts, found by its lookup key."""
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1000,
            "currency_options": {"eur": {"unit_amount": 900}, "ron": {"unit_amount": 4500}},
            "product_data": {"name": "Starter"},
            "recurring": {"interval": "month"},
            "lookup_key": "starter_monthly",
        }
    )


@pytest.fixture
def pack(client):
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500,
            "currency_options": {"eur": {"unit_amount": 450}, "ron": {"unit_amount": 2300}},
            "product_data": {"name": "100 points"},
            "lookup_key": "points_100",
        }
    )


def test_currency_options_only_when_expanded(client, plan):
    assert "currency_options" not in plan
    assert (plan.currency, plan.unit_amount) == ("usd", 1000)
    expanded = client.v1.prices.retrieve(plan.id, params={"expand": ["currency_options"]})
    options = present(expanded.currency_options)
    assert sorted(expanded.to_dict()["currency_options"]) == ["eur", "ron", "usd"]
    eur = options["eur"]
    assert (eur.unit_amount, eur.unit_amount_decimal, eur.tax_behavior, eur.custom_unit_amount) == (
        900,
        "900",
        "unspecified",
        None,
    )
    assert options["ron"].unit_amount == 4500 and options["usd"].unit_amount == 1000
    assert "currency_options" not in client.v1.prices.retrieve(plan.id)


def test_lookup_key_list_and_search_keep_working(client, plan, pack):
    found = client.v1.prices.list(params={"lookup_keys": ["starter_monthly"], "expand": ["data.currency_options"]})
    assert [p.id for p in found.data] == [plan.id]
    assert present(found.data[0].currency_options)["ron"].unit_amount == 4500
    plain = client.v1.prices.list(params={"lookup_keys": ["points_100", "starter_monthly"]})
    assert {p.id for p in plain.data} == {plan.id, pack.id}
    assert all("currency_options" not in p for p in plain.data)


def test_search_by_lookup_key(client, plan, pack):
    found = client.v1.prices.search(params={"query": "lookup_key:'points_100'", "expand": ["data.currency_options"]})
    assert [p.id for p in found.data] == [pack.id] and not found.has_more
    assert present(found.data[0].currency_options)["eur"].unit_amount == 450
    both = client.v1.prices.search(params={"query": "active:'true' AND currency:'usd'", "limit": 1})
    assert len(both.data) == 1 and both.has_more
    rest = client.v1.prices.search(params={"query": "active:'true' AND currency:'usd'", "page": both.next_page})
    assert {p.id for p in both.data + rest.data} == {plan.id, pack.id} and not rest.has_more
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.prices.search(params={"query": "nickname:'x'"})
    assert "unsupported search field" in str(caught.value.user_message)


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"currency": "xyz"}, "currency", "Invalid currency: xyz. Stripe currently supports these currencies: "),
        ({"currency_options": {"xyz": {"unit_amount": 5}}}, "currency_options[xyz]", "Invalid currency: xyz."),
        ({"currency_options": {"eur": {"unit_amount": -1}}}, "currency_options[eur][unit_amount]", "Invalid"),
        ({"currency_options": {"usd": {"unit_amount": 900}}}, "currency_options[usd]", "the price's own currency"),
    ],
)
def test_price_create_refusals(client, params, param, message):
    base = {"currency": "usd", "unit_amount": 1000, "product_data": {"name": "X"}}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.prices.create(params={**base, **params})
    assert caught.value.param == param
    assert message in str(caught.value.user_message)


def test_unsupported_option_field_is_refused(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 1000,
                "product_data": {"name": "X"},
                "currency_options": {"eur": {"unit_amount": 900, "tax_behavior": "inclusive"}},
            }
        )
    assert caught.value.code == "parameter_unsupported"
    assert caught.value.param == "currency_options[eur][tax_behavior]"


@pytest.mark.parametrize(("currency", "amount"), [("usd", 50), ("eur", 50), ("ron", 200)])
def test_payment_intents_in_each_currency_and_minimums(client, currency, amount):
    pi = client.v1.payment_intents.create(
        params={"amount": amount, "currency": currency, "payment_method": "pm_card_visa", "confirm": True}
    )
    assert (pi.status, pi.currency, pi.amount) == ("succeeded", currency, amount)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params={"amount": amount - 1, "currency": currency})
    assert (caught.value.param, caught.value.code) == ("amount", "amount_too_small")
    assert str(caught.value.user_message).startswith("Amount must be at least ")
    assert str(caught.value.user_message).endswith(f" {currency}")


def test_payment_intent_refuses_unknown_currency(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params={"amount": 500, "currency": "xyz"})
    assert caught.value.param == "currency"
    message = str(caught.value.user_message)
    assert message.startswith("Invalid currency: xyz. Stripe currently supports these currencies: ")
    assert all(code in message for code in ("eur", "ron", "usd"))


def test_sepa_debit_only_in_eur(client):
    eur = client.v1.payment_intents.create(
        params={"amount": 450, "currency": "eur", "automatic_payment_methods": {"enabled": True}}
    )
    assert "sepa_debit" in eur.payment_method_types
    for currency in ("usd", "ron"):
        other = client.v1.payment_intents.create(
            params={"amount": 2300, "currency": currency, "automatic_payment_methods": {"enabled": True}}
        )
        assert "sepa_debit" not in other.payment_method_types


def test_checkout_in_eur_charges_the_option(client, sandbox, pack):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "currency": "eur",
            "line_items": [{"price": pack.id, "quantity": 2}],
            "success_url": "https://example.com/ok",
        }
    )
    assert (session.currency, session.amount_total, session.amount_subtotal) == ("eur", 900, 900)
    (line,) = client.v1.checkout.sessions.line_items.list(session.id).data
    assert (line.currency, line.amount_total, line.quantity) == ("eur", 900, 2)
    assert (present(line.price).id, present(line.price).currency, present(line.price).unit_amount) == (
        pack.id,
        "usd",
        500,
    )
    status, paid = pay(sandbox, session.id, "pm_card_visa", email="ann@example.com")
    assert status == 200, paid
    pi = client.v1.payment_intents.retrieve(present(paid["payment_intent"]))
    assert (pi.currency, pi.amount, pi.status) == ("eur", 900, "succeeded")
    usd = client.v1.checkout.sessions.create(
        params={"mode": "payment", "line_items": [{"price": pack.id, "quantity": 1}], "success_url": "https://x.test"}
    )
    assert (usd.currency, usd.amount_total) == ("usd", 500)


def test_checkout_currency_without_option_is_refused(client):
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 500, "product_data": {"name": "X"}})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "currency": "ron",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": "https://x.test",
            }
        )
    assert caught.value.param == "line_items[0][price]"
    assert "currency_options" in str(caught.value.user_message)


def test_subscription_in_eur_renews_in_eur_and_locks_the_customer(client, sandbox, plan):
    customer = client.v1.customers.create(params={"email": "de@example.com"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "currency": "eur",
            "items": [{"price": plan.id}],
            "default_payment_method": "pm_card_visa",
            "expand": ["latest_invoice"],
        }
    )
    assert (sub.status, sub.currency) == ("active", "eur")
    shown = sub["items"].data[0].price  # the Price as it is, as Stripe shows it
    assert (shown.id, shown.currency, shown.unit_amount) == (plan.id, "usd", 1000)
    invoice = sub.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    assert (invoice.currency, invoice.amount_paid) == ("eur", 900)
    assert client.v1.customers.retrieve(customer.id).currency == "eur"
    sandbox.control("POST", "clock/advance", {"seconds": 32 * 24 * 3600})
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert len(invoices) == 2
    assert all((i.currency, i.amount_paid) == ("eur", 900) for i in invoices)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": plan.id}], "default_payment_method": "pm_card_visa"}
        )
    assert str(caught.value.user_message) == (
        "You cannot combine currencies on a single customer. This customer has had a subscription, "
        "coupon, or invoice item with currency eur"
    )


def test_checkout_subscription_in_ron_and_the_lock_at_checkout(client, sandbox, plan):
    customer = client.v1.customers.create(params={"email": "ro@example.com"})
    params = {
        "mode": "subscription",
        "customer": customer.id,
        "currency": "ron",
        "line_items": [{"price": plan.id, "quantity": 1}],
        "success_url": "https://x.test",
    }
    session = client.v1.checkout.sessions.create(params=params)
    assert (session.currency, session.amount_total) == ("ron", 4500)
    status, paid = pay(sandbox, session.id, "pm_card_visa")
    assert status == 200, paid
    sub = client.v1.subscriptions.retrieve(present(paid["subscription"]))
    assert sub.currency == "ron"
    assert client.v1.customers.retrieve(customer.id).currency == "ron"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params={**params, "currency": "usd"})
    assert "with currency ron" in str(caught.value.user_message)
    # one-time payments are not bound to the customer's billing currency (as at Stripe)
    pi = client.v1.payment_intents.create(
        params={"amount": 500, "currency": "usd", "customer": customer.id, "payment_method": "pm_card_visa"}
    )
    assert pi.currency == "usd"


def test_plan_change_in_eur_prorates_with_the_options(client, sandbox, plan):
    advanced = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 2500,
            "currency_options": {"eur": {"unit_amount": 2200}},
            "product_data": {"name": "Advanced"},
            "recurring": {"interval": "month"},
        }
    )
    customer = client.v1.customers.create(params={"email": "de2@example.com"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "currency": "eur",
            "items": [{"price": plan.id}],
            "default_payment_method": "pm_card_visa",
        }
    )
    item = sub["items"].data[0]
    updated = client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "price": advanced.id}], "proration_behavior": "always_invoice"},
    )
    assert updated.currency == "eur"
    latest = updated.latest_invoice
    assert isinstance(latest, str)
    invoice = client.v1.invoices.retrieve(latest)
    assert invoice.currency == "eur" and invoice.status == "paid"
    share = (item.current_period_end - sandbox_now(sandbox)) / (item.current_period_end - item.current_period_start)
    assert abs(invoice.amount_paid - (2200 - 900) * share) <= 2
    assert all(ln.currency == "eur" for ln in invoice.lines.data)
    assert updated["items"].data[0].price.currency == "usd"
    sandbox.control("POST", "clock/advance", {"seconds": 32 * 24 * 3600})
    renewal = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (renewal.billing_reason, renewal.currency, renewal.amount_paid) == ("subscription_cycle", "eur", 2200)
    plain = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 3000,
            "product_data": {"name": "Pro"},
            "recurring": {"interval": "month"},
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": plain.id}]})
    assert "does not match the subscription's currency" in str(caught.value.user_message)


def sandbox_now(sandbox) -> int:
    return int(sandbox.control("GET", "clock")["now"])


def test_price_data_currency_is_checked(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {"currency": "xyz", "unit_amount": 500, "product_data": {"name": "X"}},
                        "quantity": 1,
                    }
                ],
                "success_url": "https://x.test",
            }
        )
    assert caught.value.param == "line_items[0][price_data][currency]"
    assert str(caught.value.user_message).startswith("Invalid currency: xyz.")


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_hosted_pages_show_the_charged_currency(client, sandbox, pack, plan):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "currency": "eur",
            "line_items": [{"price": pack.id, "quantity": 2}],
            "success_url": "https://x.test",
        }
    )
    page = _page(present(session.url))
    assert "€4.50" in page and "€9.00" in page and "$5.00" not in page
    customer = client.v1.customers.create(params={"email": "ro2@example.com"})
    client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "currency": "ron",
            "items": [{"price": plan.id}],
            "default_payment_method": "pm_card_visa",
        }
    )
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer.id, "return_url": "https://x.test"})
    assert "45.00 RON" in _page(portal.url)


def test_update_currency_options(client, pack):
    updated = client.v1.prices.update(
        pack.id, params={"currency_options": {"eur": {"unit_amount": 470}}, "expand": ["currency_options"]}
    )
    options = present(updated.currency_options)
    assert (options["eur"].unit_amount, options["ron"].unit_amount, options["usd"].unit_amount) == (470, 2300, 500)
    assert updated.unit_amount == 500
    cleared = client.v1.prices.update(pack.id, params={"currency_options": "", "expand": ["currency_options"]})
    assert sorted(cleared.to_dict()["currency_options"]) == ["usd"]


def test_sepa_checkout_in_eur_on_a_usd_price(client, sandbox, pack):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "currency": "eur",
            "allowed_payment_method_types": ["card", "sepa_debit"],
            "line_items": [{"price": pack.id, "quantity": 1}],
            "success_url": "https://x.test",
        }
    )
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89370400440532013000"},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@shop.test"},
        }
    )
    status, body = pay(sandbox, session.id, pm.id)
    assert status == 200, body
    assert (body["status"], body["payment_status"]) == ("complete", "unpaid")
    sandbox.advance_clock(3600)
    session = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert session.payment_status == "paid"
    pi = session.payment_intent
    assert isinstance(pi, stripe.PaymentIntent)
    assert (pi.currency, pi.amount, pi.status, pi.payment_method_types) == (
        "eur",
        450,
        "succeeded",
        ["card", "sepa_debit"],
    )
