"""SetupIntents through the official SDK: saving cards, 3-D Secure on setup (complete / fail),
off-session payments afterwards, publishable-key confirms, cancel, update, list, events."""

from __future__ import annotations

import json
import urllib.request

import pytest
import stripe

from .helpers import present


def authenticate(sandbox, intent_id: str, outcome: str = "complete") -> dict:
    request = urllib.request.Request(
        f"{sandbox.url}/_sandbox/authenticate/{intent_id}",
        data=json.dumps({"outcome": outcome}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def event_types(client) -> list[str]:
    return [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)]


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"email": "setup@example.com"})


def test_setup_plain_card(client, customer):
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "automatic_payment_methods": {"enabled": True},
            "metadata": {"purpose": "save"},
        }
    )
    assert si.status == "requires_payment_method" and si.usage == "off_session"
    assert si.client_secret.startswith(si.id + "_secret_")
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": "pm_card_visa"})
    assert si.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.customer == customer.id
    types = event_types(client)
    assert "setup_intent.created" in types and "setup_intent.succeeded" in types
    assert "payment_method.attached" in types
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.setup_intents.cancel(si.id)
    assert info.value.code == "setup_intent_unexpected_state"


@pytest.mark.parametrize(
    "test_id",
    ["pm_card_authenticationRequiredOnSetup", "pm_card_authenticationRequired", "pm_card_threeDSecure2Required"],
)
def test_setup_3ds_complete_then_charge_off_session(client, sandbox, customer, test_id):
    si = client.v1.setup_intents.create(params={"customer": customer.id, "payment_method": test_id, "confirm": True})
    assert si.status == "requires_action"
    assert si.next_action.type == "use_stripe_sdk"
    assert "setup_intent.requires_action" in event_types(client)
    body = authenticate(sandbox, si.id, "complete")
    assert body["status"] == "succeeded"
    si = client.v1.setup_intents.retrieve(si.id)
    assert si.status == "succeeded"
    params = {
        "amount": 1500,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": si.payment_method,
        "confirm": True,
        "off_session": True,
    }
    if test_id == "pm_card_authenticationRequiredOnSetup":
        assert client.v1.payment_intents.create(params=params).status == "succeeded"
        # on-session it still succeeds without a challenge once set up
        on_session = client.v1.payment_intents.create(params={**params, "off_session": False})
        assert on_session.status == "succeeded"
    else:  # these cards ask for authentication on every payment
        with pytest.raises(stripe.CardError) as info:
            client.v1.payment_intents.create(params=params)
        assert info.value.code == "authentication_required"


def test_setup_3ds_fail(client, sandbox, customer):
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "confirm": True,
            "return_url": "https://shop.example/saved",
        }
    )
    assert si.next_action.type == "redirect_to_url"
    assert si.next_action.redirect_to_url.url.endswith(f"/_sandbox/3ds/{si.id}")
    body = authenticate(sandbox, si.id, "fail")
    assert body["status"] == "requires_payment_method"
    si = client.v1.setup_intents.retrieve(si.id)
    assert si.last_setup_error.code == "setup_intent_authentication_failure"
    assert si.payment_method is None
    assert client.v1.payment_methods.list(params={"customer": customer.id}).data == []
    assert "setup_intent.setup_failed" in event_types(client)
    # a second attempt with another card works
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": "pm_card_visa"})
    assert si.status == "succeeded"


def test_setup_with_declining_card_fails(client, customer):
    with pytest.raises(stripe.CardError) as info:
        client.v1.setup_intents.create(
            params={"customer": customer.id, "payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
    error = present(info.value.error)
    assert error.code == "card_declined" and error.decline_code == "generic_decline"
    setup_intent = present(error.setup_intent)
    assert setup_intent.status == "requires_payment_method"
    assert present(setup_intent.last_setup_error).code == "card_declined"
    assert "setup_intent.setup_failed" in event_types(client)


def test_charge_customer_fail_card_sets_up_then_declines(client, customer):
    si = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": "pm_card_chargeCustomerFail", "confirm": True}
    )
    assert si.status == "succeeded"
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": si.payment_method,
                "confirm": True,
                "off_session": True,
            }
        )


def test_publishable_key_retrieve_and_confirm(client, publishable_client, customer):
    si = client.v1.setup_intents.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError):
        publishable_client.v1.setup_intents.retrieve(si.id)
    seen = publishable_client.v1.setup_intents.retrieve(si.id, params={"client_secret": si.client_secret})
    assert seen.status == "requires_payment_method"
    with pytest.raises(stripe.InvalidRequestError):
        publishable_client.v1.setup_intents.confirm(
            si.id, params={"payment_method": "pm_card_visa", "client_secret": "seti_x_secret_y"}
        )
    confirmed = publishable_client.v1.setup_intents.confirm(
        si.id,
        params={
            "client_secret": si.client_secret,
            "return_url": "https://shop.example/saved",
            "payment_method_data": {
                "type": "card",
                "card": {"number": "4000002500003155", "exp_month": 5, "exp_year": 2033, "cvc": "123"},
            },
        },
    )
    assert confirmed.status == "requires_action"
    assert confirmed.next_action.type == "redirect_to_url"
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.setup_intents.create(params={"customer": customer.id})
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.setup_intents.list()


def test_update_cancel_list(client, customer):
    si = client.v1.setup_intents.create(params={"allowed_payment_method_types": ["card"]})
    assert si.payment_method_types == ["card"] and si.customer is None
    si = client.v1.setup_intents.update(
        si.id, params={"customer": customer.id, "payment_method": "pm_card_visa", "metadata": {"a": "1"}}
    )
    assert si.status == "requires_confirmation" and si.customer == customer.id
    canceled = client.v1.setup_intents.cancel(si.id, params={"cancellation_reason": "abandoned"})
    assert canceled.status == "canceled" and canceled.cancellation_reason == "abandoned"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.setup_intents.confirm(si.id)
    other = client.v1.setup_intents.create(params={})
    assert [s.id for s in client.v1.setup_intents.list(params={"customer": customer.id}).data] == [si.id]
    assert len(client.v1.setup_intents.list().data) == 2 and other.customer is None
    assert "setup_intent.canceled" in event_types(client)


def test_setup_sepa_debit(client, customer):
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": "DE89370400440532013000"},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            },
        }
    )
    assert si.status == "succeeded"
    assert client.v1.payment_methods.retrieve(si.payment_method).customer == customer.id


def test_setup_missing_payment_method(client):
    si = client.v1.setup_intents.create(params={})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.setup_intents.confirm(si.id)
    assert info.value.code == "setup_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.setup_intents.retrieve("seti_missing")
    assert info.value.http_status == 404
