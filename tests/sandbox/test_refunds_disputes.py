"""Refunds, disputes and charges through the official SDK: partial and full refunds, over-refunds
refused, the pending / failing refund cards, every dispute card, and their webhooks."""

from __future__ import annotations

import pytest
import stripe


def pay(client, test_id: str = "pm_card_visa", amount: int = 5000, **extra):
    return client.v1.payment_intents.create(
        params={"amount": amount, "currency": "usd", "payment_method": test_id, "confirm": True, **extra}
    )


def event_types(client) -> list[str]:
    return [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)]


def test_partial_then_full_refund(client):
    pi = pay(client)
    partial = client.v1.refunds.create(
        params={
            "payment_intent": pi.id,
            "amount": 1500,
            "reason": "requested_by_customer",
            "metadata": {"ticket": "42"},
        }
    )
    assert partial.status == "succeeded" and partial.amount == 1500
    assert partial.charge == pi.latest_charge and partial.payment_intent == pi.id
    assert partial.reason == "requested_by_customer" and partial.metadata["ticket"] == "42"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.amount_refunded == 1500 and charge.refunded is False
    rest = client.v1.refunds.create(params={"charge": charge.id})
    assert rest.amount == 3500
    charge = client.v1.charges.retrieve(charge.id, params={"expand": ["refunds"]})
    assert charge.amount_refunded == 5000 and charge.refunded is True
    assert {r.id for r in charge.refunds.data} == {partial.id, rest.id}
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 1})
    assert info.value.code == "charge_already_refunded"
    assert client.v1.refunds.retrieve(partial.id).amount == 1500
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": pi.id}).data] == [rest.id, partial.id]
    updated = client.v1.refunds.update(partial.id, params={"metadata": {"ticket": "43"}})
    assert updated.metadata["ticket"] == "43"
    types = event_types(client)
    assert types.count("refund.created") == 2 and types.count("charge.refunded") == 2
    refunded = client.v1.events.list(params={"type": "charge.refunded", "limit": 1}).data[0]
    assert refunded.data.object["amount_refunded"] == 5000
    assert refunded.data.previous_attributes["amount_refunded"] == 1500


def test_over_refund_is_refused(client):
    pi = pay(client, amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1001})
    assert info.value.param == "amount" and info.value.code == "amount_too_large"
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 600})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
    assert "greater than unrefunded amount" in info.value.user_message


def test_refund_needs_a_successful_payment(client):
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"payment_intent": pi.id})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.refunds.create(params={"charge": "ch_missing"})
    assert info.value.http_status == 404


def test_pending_refund_card_settles_on_the_clock(client, sandbox):
    pi = pay(client, "pm_card_pendingRefund")
    refund = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert refund.status == "pending"
    sandbox.advance_clock(10)
    assert client.v1.refunds.retrieve(refund.id).status == "succeeded"
    types = event_types(client)
    assert "refund.updated" in types and "charge.refund.updated" in types


def test_refund_fail_card_succeeds_then_fails(client, sandbox):
    pi = pay(client, "pm_card_refundFail")
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2000})
    assert refund.status == "succeeded"
    sandbox.advance_clock(10)
    refund = client.v1.refunds.retrieve(refund.id)
    assert refund.status == "failed" and refund.failure_reason
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 0
    assert "refund.failed" in event_types(client)


@pytest.mark.parametrize(
    "test_id,count,reason,status",
    [
        ("pm_card_createDispute", 1, "fraudulent", "needs_response"),
        ("pm_card_createDisputeProductNotReceived", 1, "product_not_received", "needs_response"),
        ("pm_card_createCe3EligibleDispute", 1, "fraudulent", "needs_response"),
        ("pm_card_createMultipleDisputes", 2, "fraudulent", "needs_response"),
        ("pm_card_createDisputeInquiry", 1, "general", "warning_needs_response"),
    ],
)
def test_dispute_cards(client, sandbox, test_id, count, reason, status):
    pi = pay(client, test_id)
    assert pi.status == "succeeded"
    assert client.v1.disputes.list().data == []  # the dispute comes a little later
    sandbox.advance_clock(5)
    disputes = client.v1.disputes.list(params={"payment_intent": pi.id}).data
    assert len(disputes) == count
    dispute = client.v1.disputes.retrieve(disputes[0].id)
    assert dispute.charge == pi.latest_charge and dispute.amount == 5000
    assert dispute.reason == reason and dispute.status == status
    assert dispute.payment_method_details.card.case_type == (
        "inquiry" if status.startswith("warning") else "chargeback"
    )
    if test_id == "pm_card_createCe3EligibleDispute":
        assert dispute.enhanced_eligibility_types == ["visa_compelling_evidence_3"]
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.disputed is (status == "needs_response")
    types = event_types(client)
    assert types.count("charge.dispute.created") == count
    assert types.index("payment_intent.succeeded") < types.index("charge.dispute.created")
    if charge.disputed:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.refunds.create(params={"charge": charge.id})
        assert info.value.code == "charge_disputed"


def test_early_fraud_warning_card(client, sandbox):
    pay(client, "pm_card_createIssuerFraudRecord")
    sandbox.advance_clock(5)
    assert "radar.early_fraud_warning.created" in event_types(client)


def test_sepa_iban_that_succeeds_then_is_disputed(client, sandbox):
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": "DE35370400440532013002"},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            },
        }
    )
    assert pi.status == "processing"
    sandbox.advance_clock(6)
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    sandbox.advance_clock(5)
    assert len(client.v1.disputes.list(params={"charge": pi.latest_charge}).data) == 1


def test_charge_list_and_retrieve(client):
    customer = client.v1.customers.create(params={"email": "ch@example.com"})
    pi = pay(client, customer=customer.id)
    with pytest.raises(stripe.CardError):
        pay(client, "pm_card_visa_chargeDeclinedLostCard")
    charges = client.v1.charges.list().data
    assert len(charges) == 2
    assert [c.id for c in client.v1.charges.list(params={"customer": customer.id}).data] == [pi.latest_charge]
    charge = client.v1.charges.retrieve(pi.latest_charge, params={"expand": ["payment_intent"]})
    assert charge.payment_intent.id == pi.id
    lost = next(c for c in charges if c.status == "failed")
    assert lost.outcome.reason == "lost_card" and lost.failure_code == "card_declined"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.charges.retrieve("ch_missing")
    assert info.value.http_status == 404


def test_refund_and_dispute_webhooks_are_signed(client, sandbox, receiver, endpoint):
    pi = pay(client, "pm_card_createDispute")
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 100})
    sandbox.advance_clock(5)
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "charge.dispute.created" in r.types())
    for request in receiver.requests:
        stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"], endpoint.secret)
    types = receiver.types()
    for wanted in ("charge.succeeded", "refund.created", "charge.refunded", "charge.dispute.created"):
        assert wanted in types
