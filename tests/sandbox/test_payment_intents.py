"""PaymentIntents through the official SDK: the status machine, every test card's charge outcome,
3-D Secure (complete / fail), off-session payments, publishable-key rules, idempotent confirms,
the delayed methods (SEPA, ACH Direct Debit) on the sandbox clock, and signed webhooks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import stripe

from .helpers import present

CARDS = json.loads((Path(__file__).resolve().parents[2] / "stripe_sandbox" / "data" / "test-cards.json").read_text())
SUCCESS_OUTCOMES = {
    "succeeds",
    "succeeds_funds_to_available_balance",
    "risk_elevated",
    "postal_code_check_fails",
    "address_line1_check_fails",
    "address_checks_fail",
    "address_checks_unavailable",
    "succeeds_then_disputed",
    "succeeds_then_inquiry",
    "succeeds_then_early_fraud_warning",
    "succeeds_then_multiple_disputes",
    "succeeds_then_disputed_ce3_eligible",
    "refund_pending_then_succeeded",
    "refund_succeeded_then_failed",
    "succeeds_frictionless_3ds",
}
THREE_DS_OUTCOMES = {
    "requires_authentication_every_transaction",
    "requires_authentication_unless_set_up",
    "off_session_succeeds_as_if_set_up",
    "requires_authentication",
    "authenticates_then_declined",
}


def expected(card: dict) -> tuple:
    """What confirming an on-session PaymentIntent with ``card`` does, per test-cards.json."""
    outcome = card["outcome"]
    if outcome in SUCCESS_OUTCOMES:
        return ("succeeded",)
    if outcome in THREE_DS_OUTCOMES:
        return ("requires_action",)
    if outcome == "declined":
        code = card["error_code"]
        return ("declined", code, card["decline_code"] if code == "card_declined" else None)
    if outcome == "attach_succeeds_then_charges_declined":
        return ("declined", "card_declined", "generic_decline")
    if outcome in ("blocked_by_radar_always", "risk_highest_blocked_depending_on_rules"):
        return ("declined", "card_declined", "fraudulent")
    if outcome == "cvc_check_fails":
        return ("declined", "incorrect_cvc", None)
    if outcome in ("3ds_lookup_processing_error", "3ds_processing_error"):
        return ("declined", "processing_error", None)
    if outcome == "declined_invalid_number":
        return ("tokenization", "incorrect_number")
    raise AssertionError(f"no expectation for {outcome}")


def _id(card: dict) -> str:
    return card["pm_id"] or card["number"] or card["outcome"]


def control(sandbox, method: str, path: str, payload: dict | None = None):
    """A control route; answers (status, body) also for error statuses."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        f"{sandbox.url}/_sandbox/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def authenticate(sandbox, intent_id: str, outcome: str = "complete") -> dict:
    status, body = control(sandbox, "POST", f"authenticate/{intent_id}", {"outcome": outcome})
    assert status == 200, body
    return body


def event_types(client, **filters) -> list[str]:
    """Event types, oldest first."""
    events = client.v1.events.list(params={"limit": 100, **filters}).data
    return [e.type for e in reversed(events)]


def card_pm(publishable_client, number: str, **extra) -> stripe.PaymentMethod:
    return publishable_client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {
                "number": number,
                "exp_month": 12,
                "exp_year": 2034,
                "cvc": "123" if not number.startswith("3") or len(number) != 15 else "1234",
            },
            **extra,
        }
    )


# --- every test card ---------------------------------------------------------------------------

CHARGEABLE = [c for c in CARDS if c["number"]]


@pytest.mark.parametrize("card", CHARGEABLE, ids=_id)
def test_every_test_card_by_number(client, publishable_client, card):
    want = expected(card)
    if want[0] == "tokenization":
        with pytest.raises(stripe.CardError) as info:
            card_pm(publishable_client, card["number"])
        assert info.value.code == want[1]
        assert present(info.value.error).param == "card[number]"
        return
    pm = card_pm(publishable_client, card["number"])
    assert present(pm.card).last4 == card["number"][-4:]
    assert present(pm.card).brand == card["brand"]
    _check_confirm(client, pm.id, want)


@pytest.mark.parametrize("card", [c for c in CARDS if c["pm_id"]], ids=_id)
def test_every_test_card_by_test_id(client, card):
    _check_confirm(client, card["pm_id"], expected(card))
    for alias in card["pm_id_aliases"]:
        _check_confirm(client, alias, expected(card))


def _check_confirm(client, payment_method: str, want: tuple) -> None:
    params = {
        "amount": 2000,
        "currency": "usd",
        "payment_method": payment_method,
        "confirm": True,
        "metadata": {"order": "7"},
    }
    if want[0] == "declined":
        with pytest.raises(stripe.CardError) as info:
            client.v1.payment_intents.create(params=params)
        error = info.value
        assert error.http_status == 402
        assert error.code == want[1]
        sent = present(error.error)
        assert sent.decline_code == want[2]
        assert sent.type == "card_error"
        assert sent.message
        pi = present(sent.payment_intent)
        assert pi.status == "requires_payment_method"
        last_error = present(pi.last_payment_error)
        assert last_error.code == want[1]
        assert present(last_error.payment_method).id == present(sent.payment_method).id
        charge = client.v1.charges.retrieve(present(sent.charge))
        assert charge.status == "failed" and charge.paid is False
        assert charge.failure_code == want[1]
        if want[2] == "fraudulent":
            assert charge.outcome.type == "blocked"
            assert charge.outcome.risk_level == "highest"
        else:
            assert charge.outcome.type == "issuer_declined"
        return
    pi = client.v1.payment_intents.create(params=params)
    assert pi.status == want[0]
    if want[0] == "succeeded":
        assert pi.amount_received == 2000
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.status == "succeeded" and charge.paid and charge.captured
        assert charge.payment_intent == pi.id
        assert charge.metadata["order"] == "7"
        assert charge.outcome.type == "authorized"
        assert charge.payment_method_details.card.last4
    else:
        assert pi.next_action.type == "use_stripe_sdk"
        assert pi.latest_charge is None


@pytest.mark.parametrize("card", [c for c in CARDS if c["category"] == "invalid_data"], ids=_id)
def test_invalid_card_data_is_refused_when_tokenizing(publishable_client, card):
    number, month, year, cvc = "4242424242424242", 12, 2034, "123"
    if card["error_code"] == "invalid_expiry_month":
        month = 13
    elif card["error_code"] == "invalid_expiry_year":
        year = 95
    elif card["error_code"] == "invalid_cvc":
        cvc = "99"
    with pytest.raises(stripe.CardError) as info:
        publishable_client.v1.payment_methods.create(
            params={"type": "card", "card": {"number": number, "exp_month": month, "exp_year": year, "cvc": cvc}}
        )
    assert info.value.code == card["error_code"]
    assert info.value.http_status == 402


def test_risk_and_address_checks_on_the_charge(client):
    pi = client.v1.payment_intents.create(
        params={"amount": 1500, "currency": "usd", "payment_method": "pm_card_riskLevelElevated", "confirm": True}
    )
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.outcome.risk_level == "elevated"
    pi = client.v1.payment_intents.create(
        params={"amount": 1500, "currency": "usd", "payment_method": "pm_card_avsZipFail", "confirm": True}
    )
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method_details.card.checks.address_postal_code_check == "fail"


# --- status machine ----------------------------------------------------------------------------


def test_status_machine_create_update_confirm(client):
    customer = client.v1.customers.create(params={"email": "buyer@example.com"})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1999,
            "currency": "usd",
            "customer": customer.id,
            "automatic_payment_methods": {"enabled": True},
            "description": "Order 1",
            "receipt_email": "buyer@example.com",
            "metadata": {"order_id": "1"},
        }
    )
    assert pi.status == "requires_payment_method"
    assert pi.client_secret.startswith(pi.id + "_secret_")
    assert pi.automatic_payment_methods.enabled is True
    assert pi.payment_method_types == ["card", "us_bank_account"]
    assert pi.capture_method == "automatic" and pi.amount_received == 0
    pi = client.v1.payment_intents.update(
        pi.id, params={"amount": 2500, "payment_method": "pm_card_visa", "metadata": {"step": "2"}}
    )
    assert pi.status == "requires_confirmation" and pi.amount == 2500
    assert pi.metadata.to_dict() == {"order_id": "1", "step": "2"}
    pi = client.v1.payment_intents.confirm(pi.id)
    assert pi.status == "succeeded" and pi.amount_received == 2500
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.customer == customer.id and charge.amount == 2500
    assert charge.receipt_email == "buyer@example.com"
    fetched = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    assert fetched.latest_charge.id == charge.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.confirm(pi.id)
    assert info.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.cancel(pi.id)
    assert info.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.update(pi.id, params={"amount": 10000})
    types = event_types(client)
    assert (
        types.index("payment_intent.created")
        < types.index("charge.succeeded")
        < types.index("payment_intent.succeeded")
    )


def test_confirm_without_payment_method_and_cancel(client):
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.confirm(pi.id)
    assert info.value.code == "payment_intent_unexpected_state"
    canceled = client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "requested_by_customer"})
    assert canceled.status == "canceled" and canceled.canceled_at
    assert canceled.cancellation_reason == "requested_by_customer"
    assert "payment_intent.canceled" in event_types(client)


def test_retry_after_decline_then_success(client):
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.CardError) as info:
        client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_visa_chargeDeclinedInsufficientFunds"}
        )
    assert present(info.value.error).decline_code == "insufficient_funds"
    failed = client.v1.payment_intents.retrieve(pi.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.decline_code == "insufficient_funds"
    assert failed.payment_method is None
    ok = client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_mastercard"})
    assert ok.status == "succeeded" and ok.last_payment_error is None
    charges = client.v1.charges.list(params={"payment_intent": pi.id}).data
    assert sorted(c.status for c in charges) == ["failed", "succeeded"]
    types = event_types(client)
    assert "payment_intent.payment_failed" in types and "charge.failed" in types


def test_list_payment_intents_by_customer(client):
    a = client.v1.customers.create(params={"email": "a@example.com"})
    b = client.v1.customers.create(params={"email": "b@example.com"})
    for customer in (a, a, b):
        client.v1.payment_intents.create(params={"amount": 700, "currency": "eur", "customer": customer.id})
    assert len(client.v1.payment_intents.list(params={"customer": a.id}).data) == 2
    page = client.v1.payment_intents.list(params={"limit": 2})
    assert len(page.data) == 2 and page.has_more
    assert len(client.v1.charges.list(params={"customer": a.id}).data) == 0


@pytest.mark.parametrize(
    "amount,currency,code",
    [
        (49, "usd", "amount_too_small"),
        (29, "gbp", "amount_too_small"),
        (100000000, "usd", "amount_too_large"),
        (49, "jpy", "amount_too_small"),
    ],
)
def test_amount_limits(client, amount, currency, code):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(params={"amount": amount, "currency": currency})
    assert info.value.code == code and info.value.param == "amount"
    assert info.value.http_status == 400


def test_limits_accepted_at_the_edges_and_currency_validated(client):
    assert client.v1.payment_intents.create(params={"amount": 50, "currency": "usd"}).amount == 50
    assert client.v1.payment_intents.create(params={"amount": 99999999, "currency": "usd"}).amount == 99999999
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "xyz"})
    assert info.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(params={"amount": 1000})
    assert info.value.code == "parameter_missing"


def test_unsupported_parameters_are_refused(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "capture_method": "manual"})
    assert info.value.code == "parameter_unsupported"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "statement_descriptor": "X"})
    assert info.value.code == "parameter_unsupported"


def test_unknown_intent_is_404(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.retrieve("pi_doesnotexist")
    assert info.value.http_status == 404 and info.value.code == "resource_missing"


# --- 3-D Secure --------------------------------------------------------------------------------


def test_3ds_complete_succeeds(client, sandbox):
    pi = client.v1.payment_intents.create(
        params={"amount": 3000, "currency": "usd", "payment_method": "pm_card_threeDSecure2Required", "confirm": True}
    )
    assert pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"
    assert pi.next_action.use_stripe_sdk["stripe_js"] == f"{sandbox.url}/_sandbox/3ds/{pi.id}"
    body = authenticate(sandbox, pi.id, "complete")
    assert body["status"] == "succeeded" and body["next_action"] is None
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "succeeded"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"
    types = event_types(client)
    assert types.index("payment_intent.requires_action") < types.index("payment_intent.succeeded")


def test_3ds_fail(client, sandbox):
    pi = client.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
            "return_url": "https://shop.example/return",
        }
    )
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.url == f"{sandbox.url}/_sandbox/3ds/{pi.id}"
    assert pi.next_action.redirect_to_url.return_url == "https://shop.example/return"
    body = authenticate(sandbox, pi.id, "fail")
    assert body["status"] == "requires_payment_method"
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.last_payment_error.code == "payment_intent_authentication_failure"
    assert pi.last_payment_error.payment_method.card.last4 == "3184"
    assert "payment_intent.payment_failed" in event_types(client)
    # authenticating again is refused: nothing is waiting
    status, error = control(sandbox, "POST", f"authenticate/{pi.id}", {"outcome": "complete"})
    assert status == 400 and error["error"]["code"] == "payment_intent_unexpected_state"


def test_authenticate_route_validates_input(sandbox):
    status, _ = control(sandbox, "POST", "authenticate/pi_unknown", {"outcome": "complete"})
    assert status == 404
    status, _ = control(sandbox, "POST", "authenticate/pi_unknown", {"outcome": "maybe"})
    assert status == 400


def test_authenticate_then_declined(client, sandbox):
    pi = client.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    body = authenticate(sandbox, pi.id)
    assert body["status"] == "requires_payment_method"
    assert body["last_payment_error"]["decline_code"] == "insufficient_funds"
    assert client.v1.charges.retrieve(body["latest_charge"]).status == "failed"


def test_3ds_card_off_session_is_declined_authentication_required(client):
    customer = client.v1.customers.create(params={"email": "off@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_authenticationRequiredOnSetup", params={"customer": customer.id})
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
    assert info.value.code == "authentication_required"
    assert present(info.value.error).decline_code == "authentication_required"
    assert present(present(info.value.error).payment_intent).status == "requires_payment_method"


def test_on_session_only_card_succeeds_off_session(client):
    customer = client.v1.customers.create(params={"email": "x@example.com"})
    pm = client.v1.payment_methods.attach(
        "pm_card_authenticationRequiredSetupForOffSession", params={"customer": customer.id}
    )
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm.id,
            "confirm": True,
            "off_session": True,
        }
    )
    assert pi.status == "succeeded"


def test_setup_future_usage_saves_the_card_and_later_charges_off_session(client, sandbox):
    customer = client.v1.customers.create(params={"email": "save@example.com"})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "setup_future_usage": "off_session",
            "confirm": True,
        }
    )
    assert pi.status == "requires_action"
    authenticate(sandbox, pi.id)
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "succeeded" and pi.setup_future_usage == "off_session"
    saved = client.v1.customers.payment_methods.list(customer.id).data
    assert [p.id for p in saved] == [pi.payment_method]
    again = client.v1.payment_intents.create(
        params={
            "amount": 1200,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pi.payment_method,
            "confirm": True,
            "off_session": True,
        }
    )
    assert again.status == "succeeded"
    assert "payment_method.attached" in event_types(client)


def test_payment_method_of_another_customer_is_refused(client):
    a = client.v1.customers.create(params={"email": "a@example.com"})
    b = client.v1.customers.create(params={"email": "b@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": a.id})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "usd", "customer": b.id, "payment_method": pm.id}
        )


def test_payment_method_used_without_customer_cannot_be_reused(client):
    pi = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "usd", "payment_method": pi.payment_method, "confirm": True}
        )
    assert info.value.code == "payment_method_unexpected_state"


# --- publishable key (Stripe.js) ---------------------------------------------------------------


def test_publishable_key_confirms_with_client_secret(client, publishable_client):
    pi = client.v1.payment_intents.create(params={"amount": 4200, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        publishable_client.v1.payment_intents.retrieve(pi.id)
    assert info.value.param == "client_secret"
    with pytest.raises(stripe.InvalidRequestError):
        publishable_client.v1.payment_intents.retrieve(pi.id, params={"client_secret": pi.id + "_secret_wrong"})
    seen = publishable_client.v1.payment_intents.retrieve(pi.id, params={"client_secret": pi.client_secret})
    assert seen.status == "requires_payment_method"
    # Stripe.js sends client_secret on confirm; the SDK's typed params lack it, so raw request:
    confirmed = publishable_client.v1.payment_intents.confirm(
        pi.id,
        params={
            "client_secret": pi.client_secret,
            "return_url": "https://shop.example/done",
            "payment_method_data": {
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 4, "exp_year": 2031, "cvc": "314"},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            },
        },
    )
    assert confirmed.status == "succeeded"
    charge = client.v1.charges.retrieve(confirmed.latest_charge)
    assert charge.billing_details.name == "Jenny Rosen"
    assert charge.payment_method_details.card.checks.cvc_check == "pass"


def test_publishable_key_confirm_needs_the_client_secret(client, publishable_client):
    pi = client.v1.payment_intents.create(params={"amount": 4200, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        publishable_client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert info.value.param == "client_secret"
    with pytest.raises(stripe.InvalidRequestError):
        publishable_client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_visa", "client_secret": "pi_x_secret_y"}
        )
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.payment_intents.list()
    with pytest.raises(stripe.AuthenticationError):
        publishable_client.v1.customers.list()
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


def test_publishable_decline_reaches_stripe_js_shape(client, publishable_client):
    pi = client.v1.payment_intents.create(params={"amount": 4200, "currency": "usd"})
    with pytest.raises(stripe.CardError) as info:
        publishable_client.v1.payment_intents.confirm(
            pi.id,
            params={
                "client_secret": pi.client_secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": "4000000000000002", "exp_month": 4, "exp_year": 2031, "cvc": "314"},
                },
            },
        )
    assert present(info.value.error).decline_code == "generic_decline"
    assert present(info.value.error).message == "Your card was declined."


# --- idempotency -------------------------------------------------------------------------------


def test_idempotent_confirm_replays_without_a_second_charge(client):
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"})
    first = client.v1.payment_intents.confirm(pi.id, options={"idempotency_key": "confirm-1"})
    again = client.v1.payment_intents.confirm(pi.id, options={"idempotency_key": "confirm-1"})
    assert first.status == again.status == "succeeded"
    assert first.latest_charge == again.latest_charge
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.charges.list(params={"payment_intent": pi.id}).data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.confirm(
            pi.id, params={"return_url": "https://x.example"}, options={"idempotency_key": "confirm-1"}
        )


def test_idempotent_declined_confirm_replays_the_same_card_error(client):
    params = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True}
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as info:
            client.v1.payment_intents.create(params=params, options={"idempotency_key": "d-1"})
        errors.append(info.value)
    first, again = (present(e.error) for e in errors)
    assert present(first.payment_intent).id == present(again.payment_intent).id
    assert first.charge == again.charge
    assert len(client.v1.payment_intents.list().data) == 1
    assert len(client.v1.charges.list().data) == 1


# --- SEPA Direct Debit (delayed) ---------------------------------------------------------------


def _sepa(client, iban: str) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": iban},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            },
        }
    )


@pytest.mark.parametrize("iban", ["AT611904300234573201", "DE89370400440532013000"])
def test_sepa_processing_then_succeeds(client, sandbox, iban):
    pi = _sepa(client, iban)
    assert pi.status == "processing"
    assert client.v1.charges.retrieve(pi.latest_charge).status == "pending"
    sandbox.advance_clock(10)
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "succeeded" and pi.amount_received == 2500
    assert client.v1.charges.retrieve(pi.latest_charge).status == "succeeded"
    types = event_types(client)
    assert types.index("payment_intent.processing") < types.index("payment_intent.succeeded")
    assert "charge.pending" in types and "charge.succeeded" in types


@pytest.mark.parametrize("iban", ["AT861904300235473202", "DE62370400440532013001"])
def test_sepa_processing_then_fails(client, sandbox, iban):
    pi = _sepa(client, iban)
    assert pi.status == "processing"
    sandbox.advance_clock(10)
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.payment_method.sepa_debit.last4 == iban[-4:]
    assert client.v1.charges.retrieve(pi.latest_charge).status == "failed"
    types = event_types(client)
    assert "payment_intent.payment_failed" in types and "charge.failed" in types


def test_sepa_needs_eur_and_allowed_type(client):
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(
            params={"amount": 2500, "currency": "usd", "allowed_payment_method_types": ["sepa_debit"]}
        )
    pi = client.v1.payment_intents.create(params={"amount": 2500, "currency": "eur"})
    assert pi.payment_method_types == ["card", "sepa_debit"]
    card_only = client.v1.payment_intents.create(
        params={"amount": 2500, "currency": "eur", "allowed_payment_method_types": ["card"]}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.confirm(
            card_only.id,
            params={
                "payment_method_data": {
                    "type": "sepa_debit",
                    "sepa_debit": {"iban": "AT611904300234573201"},
                    "billing_details": {"name": "A", "email": "a@example.com"},
                }
            },
        )
    assert info.value.code == "payment_intent_incompatible_payment_method"


# --- webhooks ----------------------------------------------------------------------------------


def test_payment_webhooks_are_delivered_and_signed(client, sandbox, receiver, endpoint):
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
    client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "payment_intent.succeeded" in r.types())
    for request in receiver.requests:
        event = stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"], endpoint.secret)
        assert event.data.object.id
    types = receiver.types()
    for wanted in (
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
        "charge.succeeded",
        "payment_intent.succeeded",
    ):
        assert wanted in types
    succeeded = next(e for e in receiver.events() if e["type"] == "payment_intent.succeeded")
    assert "_sandbox" not in json.dumps(succeeded)


# --- ACH Direct Debit (us_bank_account, delayed) -----------------------------------------------

ACH_ONLINE_MANDATE = {"customer_acceptance": {"type": "online", "online": {"infer_from_client": True}}}


def ach_pm(client, account: str = "000123456789", **bank) -> stripe.PaymentMethod:
    return client.v1.payment_methods.create(
        params={
            "type": "us_bank_account",
            "us_bank_account": {
                "routing_number": "110000000",
                "account_number": account,
                "account_holder_type": "individual",
                **bank,
            },
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
        }
    )


def _ach(client, account: str) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "allowed_payment_method_types": ["us_bank_account"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
            "payment_method_data": {
                "type": "us_bank_account",
                "us_bank_account": {"routing_number": "110000000", "account_number": account},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            },
        }
    )


def test_ach_payment_method_created_with_a_publishable_key(publishable_client, client):
    pm = ach_pm(publishable_client, account_type="savings")
    assert pm.type == "us_bank_account" and pm.id.startswith("pm_")
    bank = present(pm.us_bank_account)
    assert bank.bank_name == "STRIPE TEST BANK" and bank.last4 == "6789"
    assert bank.routing_number == "110000000" and bank.account_type == "savings"
    assert bank.account_holder_type == "individual" and bank.fingerprint
    assert present(bank.networks).preferred == "ach" and present(bank.networks).supported == ["ach"]
    assert pm.billing_details.name == "Jenny Rosen"
    assert "account_number" not in json.dumps(pm.to_dict())  # never shown back
    again = ach_pm(publishable_client, account_type="savings")
    assert present(again.us_bank_account).fingerprint == bank.fingerprint
    assert client.v1.payment_methods.retrieve(pm.id).us_bank_account.last4 == "6789"


@pytest.mark.parametrize(
    "bank, param, code",
    [
        ({"routing_number": "110000001"}, "us_bank_account[routing_number]", "routing_number_invalid"),
        ({"routing_number": "11000000"}, "us_bank_account[routing_number]", "routing_number_invalid"),
        ({"account_number": "12a4"}, "us_bank_account[account_number]", "account_number_invalid"),
        ({"account_number": "123"}, "us_bank_account[account_number]", "account_number_invalid"),
    ],
)
def test_ach_invalid_account_details_are_refused(publishable_client, bank, param, code):
    with pytest.raises(stripe.InvalidRequestError) as info:
        ach_pm(publishable_client, **bank)
    assert info.value.param == param and info.value.code == code


def test_ach_needs_a_name_and_the_account_numbers(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(
            params={
                "type": "us_bank_account",
                "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789"},
            }
        )
    assert info.value.param == "billing_details[name]"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_methods.create(
            params={
                "type": "us_bank_account",
                "us_bank_account": {"routing_number": "110000000"},
                "billing_details": {"name": "Jenny Rosen"},
            }
        )
    assert info.value.param == "us_bank_account[account_number]"


def test_usd_automatic_methods_offer_ach_and_eur_does_not(client):
    usd = client.v1.payment_intents.create(
        params={"amount": 2500, "currency": "usd", "automatic_payment_methods": {"enabled": True}}
    )
    assert usd.payment_method_types == ["card", "us_bank_account"]
    assert usd.payment_method_options.us_bank_account.verification_method == "automatic"
    eur = client.v1.payment_intents.create(
        params={"amount": 2500, "currency": "eur", "automatic_payment_methods": {"enabled": True}}
    )
    assert eur.payment_method_types == ["card", "sepa_debit"]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.create(
            params={"amount": 2500, "currency": "eur", "allowed_payment_method_types": ["us_bank_account"]}
        )
    assert info.value.param == "currency"
    card_only = client.v1.payment_intents.create(
        params={"amount": 2500, "currency": "usd", "allowed_payment_method_types": ["card"]}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.confirm(
            card_only.id, params={"payment_method": ach_pm(client).id, "mandate_data": ACH_ONLINE_MANDATE}
        )
    assert info.value.code == "payment_intent_incompatible_payment_method"


def test_ach_confirm_needs_a_mandate(client):
    pi = client.v1.payment_intents.create(
        params={"amount": 2500, "currency": "usd", "automatic_payment_methods": {"enabled": True}}
    )
    pm = ach_pm(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id})
    assert info.value.param == "mandate_data"
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


def test_ach_processing_then_succeeds(client, publishable_client, sandbox):
    """As Stripe.js confirms it: publishable key, client secret, online mandate inferred."""
    customer = client.v1.customers.create(params={"email": "jenny@example.com"})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1999,
            "currency": "usd",
            "customer": customer.id,
            "automatic_payment_methods": {"enabled": True},
        }
    )
    pm = ach_pm(publishable_client)
    pi = publishable_client.v1.payment_intents.confirm(
        pi.id, params={"client_secret": pi.client_secret, "payment_method": pm.id, "mandate_data": ACH_ONLINE_MANDATE}
    )
    assert pi.status == "processing" and pi.amount_received == 0
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.id.startswith("py_") and charge.status == "pending" and not charge.paid
    details = charge.payment_method_details
    assert details.type == "us_bank_account"
    assert details.us_bank_account.bank_name == "STRIPE TEST BANK"
    assert details.us_bank_account.last4 == "6789"
    assert details.us_bank_account.routing_number == "110000000"
    sandbox.advance_clock(10)
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "succeeded" and pi.amount_received == 1999
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "succeeded" and charge.paid and charge.amount_captured == 1999
    types = event_types(client)
    assert types.index("payment_intent.processing") < types.index("payment_intent.succeeded")
    assert types.index("charge.pending") < types.index("charge.succeeded")


@pytest.mark.parametrize(
    "account, code",
    [
        ("000111111116", "no_account"),
        ("000111111113", "account_closed"),
        ("000222222227", "insufficient_funds"),
    ],
)
def test_ach_processing_then_fails(client, sandbox, account, code):
    pi = _ach(client, account)
    assert pi.status == "processing"
    assert client.v1.charges.retrieve(pi.latest_charge).status == "pending"
    sandbox.advance_clock(10)
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method" and pi.amount_received == 0
    error = pi.last_payment_error
    assert error.code == code and error.message
    assert error.payment_method.type == "us_bank_account"
    assert error.payment_method.us_bank_account.last4 == account[-4:]
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "failed" and charge.failure_code == code
    types = event_types(client)
    assert "charge.pending" in types and "charge.failed" in types
    assert types.index("payment_intent.processing") < types.index("payment_intent.payment_failed")
    assert "payment_intent.succeeded" not in types


def test_ach_canceled_while_processing_is_refused_and_settles(client, sandbox):
    pi = _ach(client, "000123456789")
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.cancel(pi.id)
    assert info.value.code == "payment_intent_unexpected_state"
    sandbox.advance_clock(10)
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_ach_saved_for_later_with_setup_future_usage(client, sandbox):
    customer = client.v1.customers.create(params={"email": "jenny@example.com"})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer.id,
            "setup_future_usage": "off_session",
            "automatic_payment_methods": {"enabled": True},
        }
    )
    pm = ach_pm(client)
    pi = client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id, "mandate_data": ACH_ONLINE_MANDATE})
    assert pi.status == "processing"
    assert client.v1.payment_methods.retrieve(pm.id).customer == customer.id
    listed = client.v1.customers.payment_methods.list(customer.id, params={"type": "us_bank_account"})
    assert [p.id for p in listed.data] == [pm.id]
    # later, off-session: no new mandate needed for a bank account already set up
    again = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["us_bank_account"],
            "confirm": True,
            "off_session": True,
        }
    )
    assert again.status == "processing"
    sandbox.advance_clock(10)
    assert client.v1.payment_intents.retrieve(again.id).status == "succeeded"
