"""Transactional mails (issue 13) end to end: the real app against the sandbox, webhooks over
real HTTP, the real queue's worker sending through a real SMTP server (tests/mail_sink.py).

Receipts (one per paid order however many times the payment is applied: duplicate webhooks, the
status poll, reconcile; renewals too), refunds, disputes, "action needed" (3-D Secure, a decline,
a failed renewal) with a link that opens the page that fixes it, and the reminder before a
subscription set to cancel ends (the scheduled job, once per period).
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from storefront.extensions import db
from storefront.jobs import scheduled
from storefront.models import JobRun, Order, OutboundMail
from storefront.services import mail, maintenance, notifications, reconcile

from .conftest import AuthActions, browser_confirm, found
from .queue_worker import settle
from .test_subscriptions import advance, flush, pay_saved, save_card, sub_row, subscribe, subscribed
from .test_webhooks import bought, order_row, post_event, sandbox_event

BUYER = "buyer@example.com"


def page_of(client, link: str):
    """GET a link from a mail with ``client``: it must be on the store's own address."""
    app = client.application
    assert link.startswith(app.config["STORE_URL"].rstrip("/") + "/"), link
    parts = urlsplit(link)
    return client.get(parts.path + (f"?{parts.query}" if parts.query else ""))


def outbox(app, kind: str) -> list[tuple[str, str, bool]]:
    """(recipient, about, sent) of every outbox row of ``kind``."""
    with app.app_context():
        rows = db.session.execute(
            select(OutboundMail.recipient, OutboundMail.about, OutboundMail.sent_at).where(OutboundMail.kind == kind)
        ).all()
        db.session.remove()
    return [(to, about, sent is not None) for to, about, sent in rows]


def render_stored(app, kind: str, about: str):
    """Render the stored mail ``kind`` about ``about`` as the worker would send it now."""
    with app.app_context():
        row = found(
            db.session.execute(
                select(OutboundMail.recipient, OutboundMail.context).where(
                    OutboundMail.kind == kind, OutboundMail.about == about
                )
            ).first(),
            f"{kind} mail about {about}",
        )
        try:
            return mail.render(kind, row.recipient, json.loads(row.context))
        finally:
            db.session.remove()


def no_secrets(text: str) -> None:
    assert "_secret_" not in text and not re.search(r"\b\d{13,19}\b", text), text


def poll_with_sync(client, public_id: str) -> dict:
    """The order's status poll, its Stripe sync due now."""
    with client.application.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    return client.get(f"/orders/{public_id}/status").get_json()


# --- receipts --------------------------------------------------------------------------------------


def test_one_receipt_when_the_poll_three_webhooks_and_reconcile_all_apply_the_payment(
    app, buyer, client, sandbox, webhooks, mail_sink
):
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True, "duplicate": True})
    order = bought(buyer, app)  # $5.00 for 550 points
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    assert poll_with_sync(buyer, order.public_id)["order_status"] == "paid"  # the poll applies it first
    sandbox.control("DELETE", "/_sandbox/webhooks/faults")
    sandbox.control("POST", "/_sandbox/webhooks/release", {"newest_first": False})
    flush(sandbox)  # every event delivered twice
    third = post_event(client, sandbox_event(sandbox, "payment_intent.succeeded"), webhooks)
    assert third.status_code == 200
    with app.app_context():
        assert not reconcile.reconcile(1).errors
    settle()
    receipt = mail_sink.wait_for(to=BUYER, kind="receipt")
    mail_sink.assert_nothing(settle=0.5, kind="action_needed")
    assert len(mail_sink.messages(kind="receipt")) == 1
    assert outbox(app, "receipt") == [(BUYER, f"order:{order.public_id}", True)]
    text, html = mail_sink.text(receipt), mail_sink.html(receipt)
    assert receipt["Subject"] == f"Your receipt for {order.product_name}"
    for part in (text, html):
        assert order.product_name in part and "$5.00" in part and "550" in part and order.public_id in part
        no_secrets(part)
    assert app.config["STORE_NAME"] in text and app.config["STORE_NAME"] in html
    link = mail_sink.link(receipt, f"/orders/{order.public_id}")
    page = page_of(buyer, link)
    assert page.status_code == 200 and order.product_name in page.get_data(as_text=True)


def test_a_lifetime_receipt_names_what_it_includes_even_without_webhooks(app, buyer, sandbox, mail_sink):
    order = bought(buyer, app, "lifetime")
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    assert poll_with_sync(buyer, order.public_id)["order_status"] == "paid"
    settle()
    text = mail_sink.text(mail_sink.wait_for(to=BUYER, kind="receipt"))
    assert "Lifetime Plan" in text and "$400.00" in text and "Includes: Professional features forever" in text


def test_a_plan_and_each_renewal_get_a_receipt(app, buyer, sandbox, webhooks, mail_sink):
    subscribed(app, buyer, sandbox)
    flush(sandbox)
    advance(sandbox)
    flush(sandbox)
    mail_sink.wait_for(to=BUYER, kind="receipt", count=2)
    receipts = mail_sink.messages(kind="receipt")
    assert len(receipts) == 2
    with app.app_context():
        invoice_ids = db.session.scalars(select(Order.stripe_invoice_id).order_by(Order.id)).all()
    assert len(set(invoice_ids)) == 2
    for message, invoice_id in zip(receipts, invoice_ids, strict=True):
        text = mail_sink.text(message)
        assert "Starter" in text and "$5.00" in text and "500" in text and f"invoice {invoice_id}" in text


# --- refunds and disputes ----------------------------------------------------------------------------


def test_each_refund_sends_one_refund_receipt(app, buyer, sandbox, webhooks, mail_sink):
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"duplicate": True})
    sandbox.stripe.v1.refunds.create(params={"payment_intent": order.stripe_payment_intent_id, "amount": 200})
    flush(sandbox)
    partial = mail_sink.wait_for(to=BUYER, kind="refund")
    text = mail_sink.text(partial)
    assert "Refunded now: $2.00" in text and "$2.00 of $5.00" in text and "Points taken back: 220" in text
    sandbox.stripe.v1.refunds.create(params={"payment_intent": order.stripe_payment_intent_id})
    flush(sandbox)
    with app.app_context():
        reconcile.reconcile(1)  # sees both refunds again: owes nothing more
    settle()
    full = mail_sink.wait_for(to=BUYER, kind="refund", count=2)
    text = mail_sink.text(full)
    assert full["Subject"] == f"Refund of $3.00 for {order.product_name}"
    assert "Refunded now: $3.00" in text and "$5.00 of $5.00 (the whole payment)" in text
    assert "Points taken back: 330" in text
    no_secrets(text)
    assert len(mail_sink.messages(kind="refund")) == 2
    assert sorted(about for _, about, _ in outbox(app, "refund")) == [
        f"order:{order.public_id}:refunded:200",
        f"order:{order.public_id}:refunded:500",
    ]
    assert order_row(app).status == "refunded"


def test_a_dispute_tells_the_buyer_their_points_are_frozen(app, buyer, sandbox, webhooks, mail_sink):
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_createDispute")
    flush(sandbox)
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": 5})
    flush(sandbox)
    assert order_row(app).status == "disputed"
    notice = mail_sink.wait_for(to=BUYER, kind="dispute")
    text = mail_sink.text(notice)
    assert "550 points" in text and "$5.00" in text and "frozen" in text
    [(_, about, _)] = outbox(app, "dispute")
    assert about.startswith("dispute:dp_")
    assert len(mail_sink.messages(kind="receipt")) == 1


# --- action needed -----------------------------------------------------------------------------------


def waiting_for_3ds(app, buyer, sandbox):
    """An order paid with a saved card that asks for 3-D Secure: it waits for the buyer."""
    card = save_card(app, sandbox, "pm_card_authenticationRequired")
    order = bought(buyer, app)
    reply = buyer.post(
        f"/orders/{order.public_id}/pay/saved-card",
        data={"payment_method": card.id, "attempt": "a1"},
        headers={"Accept": "application/json"},
    ).get_json()
    assert reply["order_status"] == "requires_action"
    return order


def test_3ds_needed_sends_one_mail_whose_link_opens_the_pay_page(app, buyer, sandbox, webhooks, mail_sink):
    order = waiting_for_3ds(app, buyer, sandbox)
    flush(sandbox)  # payment_intent.requires_action arrives too: no second mail
    message = mail_sink.wait_for(to=BUYER, kind="action_needed")
    assert message["Subject"] == "Action needed: confirm your payment"
    text = mail_sink.text(message)
    assert "3-D Secure" in text and "$5.00" in text
    no_secrets(text)
    no_secrets(mail_sink.html(message))
    link = mail_sink.link(message, f"/orders/{order.public_id}/pay")
    page = page_of(buyer, link)
    assert page.status_code == 200 and 'data-requires-action="true"' in page.get_data(as_text=True)
    sandbox.control("POST", f"/_sandbox/authenticate/{order.stripe_payment_intent_id}", {"outcome": "complete"})
    flush(sandbox)
    mail_sink.wait_for(to=BUYER, kind="receipt")
    assert len(mail_sink.messages(kind="action_needed")) == 1
    # once paid, the same link leads to the order (nothing left to pay), and the mail, were it
    # still waiting to be sent (a backlog, an SMTP retry), is dropped rather than sent late
    assert page_of(buyer, link).headers["Location"] == f"/orders/{order.public_id}"
    with pytest.raises(mail.Drop):
        render_stored(app, "action_needed", f"order:{order.public_id}:requires_action")


def test_a_buyer_who_finishes_3ds_on_the_page_within_the_delay_gets_only_the_receipt(
    app, buyer, sandbox, webhooks, mail_sink
):
    """The "action needed" mail about an order waits ``MAIL_ACTION_DELAY_SECONDS`` (the buyer is
    usually on the pay page); paid by then, it is dropped when its time comes, never sent."""
    app.config["MAIL_ACTION_DELAY_SECONDS"] = 2.0
    try:
        order = waiting_for_3ds(app, buyer, sandbox)
        sandbox.control("POST", f"/_sandbox/authenticate/{order.stripe_payment_intent_id}", {"outcome": "complete"})
        flush(sandbox)
        mail_sink.wait_for(to=BUYER, kind="receipt")
        about = f"order:{order.public_id}:requires_action"
        deadline = time.monotonic() + 15
        while not _finished(app, about) and time.monotonic() < deadline:  # the delayed send's turn
            time.sleep(0.2)
    finally:
        app.config["MAIL_ACTION_DELAY_SECONDS"] = 0.0
    assert _finished(app, about) == "dropped:"
    assert mail_sink.messages(kind="action_needed") == []


def _finished(app, about: str) -> str | None:
    """How the stored mail ``about`` ended: the start of its error ("dropped:"), "sent", or
    None while it waits."""
    with app.app_context():
        row = db.session.execute(
            select(OutboundMail.sent_at, OutboundMail.next_attempt_at, OutboundMail.last_error).where(
                OutboundMail.about == about
            )
        ).one()
        db.session.remove()
    if row.sent_at is not None:
        return "sent"
    return None if row.next_attempt_at is not None else (row.last_error or "")[:8]


def test_a_declined_payment_sends_a_try_again_mail(app, buyer, sandbox, webhooks, mail_sink):
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_visa_chargeDeclinedInsufficientFunds")
    flush(sandbox)
    assert order_row(app).status == "failed"
    message = mail_sink.wait_for(to=BUYER, kind="action_needed")
    text = mail_sink.text(message)
    assert "did not go through" in text and "insufficient funds" in text
    link = mail_sink.link(message, f"/orders/{order.public_id}/pay")
    assert page_of(buyer, link).status_code == 200
    assert outbox(app, "action_needed") == [(BUYER, f"order:{order.public_id}:failed", True)]


def test_a_failed_renewal_mails_a_link_to_the_billing_page_once(app, buyer, sandbox, webhooks, mail_sink):
    subscribed(app, buyer, sandbox)
    failing = save_card(app, sandbox, "pm_card_chargeCustomerFail")
    assert buyer.post(f"/account/cards/{failing.id}/default").status_code == 303
    flush(sandbox)
    advance(sandbox)
    flush(sandbox)
    assert sub_row(app).status == "past_due"
    with app.app_context():
        reconcile.reconcile(1)  # the open invoice again: owes nothing more
    settle()
    message = mail_sink.wait_for(to=BUYER, kind="action_needed")
    assert "renewal of your Starter" in message["Subject"]
    text = mail_sink.text(message)
    assert "$5.00" in text and "Starter" in text
    link = mail_sink.link(message, "/account/billing")
    page = page_of(buyer, link).get_data(as_text=True)
    assert "plan failed." in page and "Pay now" in page  # the banner whose button pays the invoice
    assert len(mail_sink.messages(kind="action_needed")) == 1
    [(_, about, _)] = outbox(app, "action_needed")
    assert re.fullmatch(r"invoice:in_\w+:payment_failed", about)
    # paid on our pay page with another card: a receipt, and the mail is no longer owed
    response = buyer.post(f"/account/subscription/{sub_row(app).public_id}/pay")
    order_id = found(re.fullmatch(r"/orders/(ord_[\w-]+)/pay", response.headers["Location"]), "pay URL").group(1)
    good = save_card(app, sandbox, "pm_card_mastercard")
    assert pay_saved(buyer, order_id, good.id).get_json()["order_status"] == "paid"
    flush(sandbox)
    receipt = mail_sink.wait_for(to=BUYER, kind="receipt", count=2)
    assert order_id in mail_sink.text(receipt)
    with pytest.raises(mail.Drop):
        render_stored(app, "action_needed", about)
    assert len(mail_sink.messages(kind="action_needed")) == 1


# --- the reminder before a canceled subscription ends --------------------------------------------------


def test_the_reminder_job_mails_once_three_days_before_a_canceling_plan_ends(
    app, buyer, client, sandbox, mail_sink, monkeypatch
):
    subscribed(app, buyer, sandbox)
    row = sub_row(app)
    assert buyer.post(f"/account/subscription/{row.public_id}/cancel", data={"attempt": "c1"}).status_code == 303
    other = app.test_client()  # a second buyer whose plan renews: never reminded
    AuthActions(other).signup(email="renews@example.com")
    card = save_card(app, sandbox, email="renews@example.com")
    assert pay_saved(other, subscribe(other), card.id).get_json()["order_status"] == "paid"
    canceling = sub_row(app)
    assert sub_row(app, "renews@example.com").cancel_at_period_end is False
    ends = found(sub_row(app).current_period_end, "period end")
    assert sub_row(app).cancel_at_period_end is True and canceling.public_id == row.public_id

    with app.app_context():
        run = maintenance.run_job("renewal_reminders", trigger="test")  # a month before: nothing
        assert run.outcome == "ok" and (run.summary or "").startswith("0 reminder(s)")
    settle()
    mail_sink.assert_nothing(settle=0.3, kind="renewal_ending")

    monkeypatch.setattr(notifications, "utcnow", lambda: ends - timedelta(days=2, hours=23))
    with app.app_context():
        maintenance.run_job("renewal_reminders", trigger="test")
        scheduled.renewal_reminders()  # the periodic task, as the worker's scheduler runs it
        maintenance.run_job("renewal_reminders", trigger="test")
        summaries = db.session.scalars(
            select(JobRun.summary).where(JobRun.job == "renewal_reminders").order_by(JobRun.id)
        ).all()
    settle()
    assert (summaries[1] or "").startswith("1 reminder(s) queued (1 subscription(s)")
    assert (summaries[2] or "").startswith("0 reminder(s) queued (1 subscription(s)")
    message = mail_sink.wait_for(to=BUYER, kind="renewal_ending")
    mail_sink.assert_nothing(settle=0.3, to="renews@example.com", kind="renewal_ending")
    assert len(mail_sink.messages(kind="renewal_ending")) == 1
    text = mail_sink.text(message)
    assert "Starter" in text and ends.strftime("%-d %B %Y") in text and "will not renew" in text
    assert page_of(buyer, mail_sink.link(message, "/account/billing")).status_code == 200
    [(_, about, _)] = outbox(app, "renewal_ending")
    assert about == f"subscription:{row.public_id}:ends:{int(ends.timestamp())}"
    assert render_stored(app, "renewal_ending", about).subject.startswith("Your Starter Plan subscription ends on")
    # the buyer resumes: a reminder still waiting to be sent is dropped
    assert buyer.post(f"/account/subscription/{row.public_id}/resume", data={"attempt": "r1"}).status_code == 303
    with pytest.raises(mail.Drop):
        render_stored(app, "renewal_ending", about)
    # after the period's end (or a month before the next one) nothing more is owed
    monkeypatch.setattr(notifications, "utcnow", lambda: ends + timedelta(hours=1))
    with app.app_context():
        after_the_end = maintenance.run_job("renewal_reminders", trigger="test").summary or ""
        assert after_the_end.startswith("0 reminder(s) queued (0")
