"""PaymentMethods through the official SDK: raw cards only with a publishable key, test ids,
SEPA Direct Debit, retrieve / update / list / attach / detach and their events."""

from __future__ import annotations

import datetime

import pytest
import stripe

from .helpers import present


def event_types(client) -> list[str]:
    return [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)]


def test_raw_card_numbers_need_a_publishable_key(client, publishable_client):
    params = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 8, "exp_year": 2032, "cvc": "123"}}
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(params=params)
    assert info.value.http_status == 400 and present(info.value.error).type == "invalid_request_error"
    assert "Sending credit card numbers directly to the Stripe API is generally unsafe" in info.value.user_message
    pm = publishable_client.v1.payment_methods.create(
        params={
            **params,
            "billing_details": {
                "name": "Jenny Rosen",
                "email": "jenny@example.com",
                "address": {"postal_code": "94107", "country": "US"},
            },
        }
    )
    assert pm.id.startswith("pm_") and pm.type == "card"
    card = pm.card
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 8, 2032)
    assert card.funding == "credit" and card.country == "US" and card.wallet is None
    assert card.checks.cvc_check == "unchecked"
    assert card.three_d_secure_usage.supported is True
    assert card.networks.available == ["visa"] and card.display_brand == "visa"
    assert pm.billing_details.address.postal_code == "94107"
    assert pm.customer is None
    again = publishable_client.v1.payment_methods.create(params=params)
    assert again.card.fingerprint == card.fingerprint and again.id != pm.id


@pytest.mark.parametrize(
    "number,brand,funding",
    [
        ("5555555555554444", "mastercard", "credit"),
        ("378282246310005", "amex", "credit"),
        ("4000056655665556", "visa", "debit"),
        ("5105105105105100", "mastercard", "prepaid"),
        ("6011111111111117", "discover", "credit"),
        ("3566002020360505", "jcb", "credit"),
        ("6200000000000005", "unionpay", "credit"),
    ],
)
def test_brands_and_funding(publishable_client, number, brand, funding):
    cvc = "1234" if brand == "amex" else "123"
    pm = publishable_client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 1, "exp_year": 2040, "cvc": cvc}}
    )
    assert (pm.card.brand, pm.card.funding, pm.card.last4) == (brand, funding, number[-4:])


def test_publishable_key_cannot_read_or_list(publishable_client, client):
    pm = client.v1.payment_methods.retrieve("pm_card_visa")
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.payment_methods.retrieve(pm.id)
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.payment_methods.list()
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.customers.list()


def test_test_ids_make_fresh_payment_methods(client):
    pm = client.v1.payment_methods.retrieve("pm_card_mastercard")
    year = datetime.datetime.now(datetime.UTC).year
    assert pm.id != "pm_card_mastercard" and pm.id.startswith("pm_")
    assert pm.card.brand == "mastercard" and pm.card.last4 == "4444"
    assert (pm.card.exp_month, pm.card.exp_year) >= (12, year + 3)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.retrieve("pm_card_nonexistent")
    assert info.value.http_status == 404 and info.value.code == "resource_missing"


def test_card_token_test_id_on_create(client):
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "pm_card_amex"}, "metadata": {"k": "v"}}
    )
    assert pm.card.brand == "amex" and pm.metadata["k"] == "v"


def test_attach_list_update_detach(client):
    customer = client.v1.customers.create(params={"email": "pm@example.com"})
    visa = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    assert visa.customer == customer.id
    master = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": customer.id})
    listed = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
    assert [p.id for p in listed.data] == [master.id, visa.id]
    nested = client.v1.customers.payment_methods.list(customer.id, params={"limit": 1})
    assert [p.id for p in nested.data] == [master.id] and nested.has_more
    assert client.v1.customers.payment_methods.retrieve(customer.id, visa.id).id == visa.id
    updated = client.v1.payment_methods.update(
        visa.id,
        params={
            "billing_details": {"name": "Jenny Rosen"},
            "card": {"exp_month": 3, "exp_year": 2039},
            "metadata": {"nickname": "work"},
        },
    )
    assert updated.billing_details.name == "Jenny Rosen"
    assert (updated.card.exp_month, updated.card.exp_year) == (3, 2039)
    assert updated.metadata["nickname"] == "work"
    with pytest.raises(stripe.CardError) as info:
        client.v1.payment_methods.update(visa.id, params={"card": {"exp_month": 13}})
    assert info.value.code == "invalid_expiry_month"
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": visa.id}})
    detached = client.v1.payment_methods.detach(visa.id)
    assert detached.customer is None
    customer = client.v1.customers.retrieve(customer.id)
    assert customer.invoice_settings.default_payment_method is None
    assert [p.id for p in client.v1.customers.payment_methods.list(customer.id).data] == [master.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_methods.detach(visa.id)
    with pytest.raises(stripe.InvalidRequestError):  # a detached PaymentMethod cannot come back
        client.v1.payment_methods.attach(visa.id, params={"customer": customer.id})
    types = event_types(client)
    assert types.count("payment_method.attached") == 2
    assert "payment_method.updated" in types and "payment_method.detached" in types


def test_attach_errors(client):
    a = client.v1.customers.create(params={"email": "a@example.com"})
    b = client.v1.customers.create(params={"email": "b@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": a.id})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_methods.attach(pm.id, params={"customer": b.id})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.attach("pm_card_visa", params={"customer": "cus_missing"})
    assert info.value.http_status == 404
    with pytest.raises(stripe.CardError) as declined:  # declining cards fail the attach check
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": a.id})
    assert present(declined.value.error).decline_code == "generic_decline"


def test_charge_customer_fail_card_attaches_then_charges_decline(client):
    customer = client.v1.customers.create(params={"email": "c@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    assert pm.customer == customer.id and pm.card.last4 == "0341"
    with pytest.raises(stripe.CardError) as info:
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm.id,
                "confirm": True,
                "off_session": True,
            }
        )
    assert info.value.code == "card_declined"


def test_customer_created_with_payment_method(client):
    customer = client.v1.customers.create(params={"email": "d@example.com", "payment_method": "pm_card_visa"})
    pms = client.v1.payment_methods.list(params={"customer": customer.id}).data
    assert len(pms) == 1 and pms[0].card.last4 == "4242"


def test_sepa_debit_payment_method(client, publishable_client):
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89 3704 0044 0532 0130 00"},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
        }
    )
    assert pm.type == "sepa_debit"
    assert pm.sepa_debit.last4 == "3000" and pm.sepa_debit.country == "DE"
    assert pm.sepa_debit.bank_code == "37040044"
    browser = publishable_client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "AT611904300234573201"},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
        }
    )
    assert browser.sepa_debit.country == "AT"
    customer = client.v1.customers.create(params={"email": "sepa@example.com"})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    assert [
        p.id for p in client.v1.payment_methods.list(params={"customer": customer.id, "type": "sepa_debit"}).data
    ] == [pm.id]
    assert client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(
            params={
                "type": "sepa_debit",
                "sepa_debit": {"iban": "DE00370400440532013000"},
                "billing_details": {"name": "A", "email": "a@example.com"},
            }
        )
    assert info.value.param == "sepa_debit[iban]"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(params={"type": "sepa_debit", "sepa_debit": {"iban": "AT611904300234573201"}})
    assert info.value.code == "parameter_missing"


def test_unsupported_types_and_params_are_refused(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(params={"type": "ideal"})
    assert info.value.code == "parameter_unsupported"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(params={"type": "card", "nonsense": "1"})
    assert info.value.code == "parameter_unknown"
