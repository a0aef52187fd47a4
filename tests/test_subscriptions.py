"""Subscriptions against the running store and the sandbox: start (our page, saved card,
Checkout), renewals through the sandbox clock, a failed renewal paid with another card, plan
changes, cancel / resume, Lifetime, out-of-order and duplicate events, ownership."""

from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import select

from storefront.extensions import db
from storefront.models import Order, PointsEntry, Subscription, User
from storefront.services import subscription_sync

from .conftest import browser_confirm, clear_cache, found
from .queue_worker import settle

MONTH = 31 * 86400


# --- helpers ----------------------------------------------------------------------------------


def flush(sandbox):
    """Every webhook delivered, and processed by the queue's worker."""
    assert sandbox.control("POST", "/_sandbox/webhooks/flush", {"timeout": 20})["idle"]
    settle()


def advance(sandbox, seconds=MONTH):
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": seconds})


def customer_id(app, email="buyer@example.com") -> str:
    with app.app_context():
        return found(
            db.session.scalar(select(User.stripe_customer_id).where(User.email == email)), f"Stripe customer of {email}"
        )


def save_card(app, sandbox, pm="pm_card_visa", email="buyer@example.com"):
    return sandbox.stripe.v1.payment_methods.attach(pm, params={"customer": customer_id(app, email)})


def balance(app, email="buyer@example.com") -> int:
    with app.app_context():
        return found(db.session.scalar(select(User.points_balance).where(User.email == email)), f"user {email}")


def ledger(app) -> list[tuple[str, int]]:
    with app.app_context():
        return [(e.key, e.amount) for e in db.session.scalars(select(PointsEntry).order_by(PointsEntry.id))]


def sub_row(app, email="buyer@example.com") -> Subscription:
    """The buyer's newest subscription row (detached), asserted to exist."""
    with app.app_context():
        row = db.session.scalar(
            select(Subscription)
            .join(User, User.id == Subscription.user_id)
            .where(User.email == email)
            .order_by(Subscription.id.desc())
        )
        if row is not None:
            db.session.expunge(row)
        return found(row, f"subscription of {email}")


def invoice_orders(app) -> list[Order]:
    with app.app_context():
        rows = db.session.scalars(select(Order).where(Order.method == "subscription_invoice").order_by(Order.id)).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def catch_up(client):
    """The billing page, with its Stripe sync due now (it runs at most every few seconds)."""
    clear_cache(client.application)
    return client.get("/account/billing").get_data(as_text=True)


def subscribe(client, lookup_key="starter_monthly", **form) -> str:
    """Start a plan on our page; returns the first invoice's order public id."""
    form.setdefault("attempt", "a1")
    response = client.post(f"/account/subscribe/{lookup_key}", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    match = re.fullmatch(r"/orders/(ord_[\w-]+)/pay", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def pay_saved(client, order_id, pm_id, attempt="p1"):
    return client.post(
        f"/orders/{order_id}/pay/saved-card",
        data={"payment_method": pm_id, "attempt": attempt},
        headers={"Accept": "application/json"},
    )


def subscribed(app, client, sandbox, lookup_key="starter_monthly", pm="pm_card_visa"):
    card = save_card(app, sandbox, pm)
    order_id = subscribe(client, lookup_key)
    reply = pay_saved(client, order_id, card.id).get_json()
    assert reply["order_status"] == "paid", reply
    return order_id, card


def authenticated_then_polled(app, buyer, sandbox, order: Order, order_id: str) -> str:
    """The buyer passes 3-D Secure for ``order`` at the sandbox; the status page, due a sync,
    asks Stripe and answers the order's status."""
    sandbox.control("POST", f"/_sandbox/authenticate/{order.stripe_payment_intent_id}", {"outcome": "complete"})
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    return buyer.get(f"/orders/{order_id}/status").get_json()["order_status"]


def stripe_sub(sandbox, app, email="buyer@example.com"):
    return sandbox.stripe.v1.subscriptions.retrieve(sub_row(app, email).stripe_subscription_id)


# --- starting on our page -------------------------------------------------------------------------


def test_subscribe_creates_an_incomplete_subscription_and_its_first_invoice_order(app, buyer, sandbox):
    order_id = subscribe(buyer, "advanced_monthly", amount="1")
    order = invoice_orders(app)[0]
    assert order.public_id == order_id
    assert (order.amount, order.currency, order.points, order.status) == (1500, "usd", 2000, "pending")
    sub = sandbox.stripe.v1.subscriptions.retrieve(order.stripe_subscription_id)
    assert sub.status == "incomplete" and sub.items.data[0].price.lookup_key == "advanced_monthly"
    assert sub.latest_invoice == order.stripe_invoice_id
    invoice = sandbox.stripe.v1.invoices.retrieve(order.stripe_invoice_id, params={"expand": ["confirmation_secret"]})
    assert invoice.confirmation_secret.client_secret.startswith(order.stripe_payment_intent_id)
    row = sub_row(app)
    assert row.status == "incomplete" and row.stripe_subscription_id == sub.id
    page = buyer.get(f"/orders/{order_id}/pay").get_data(as_text=True)
    assert 'data-client-secret="pi_' in page and "Advanced Plan" in page
    # the same form again (same attempt): one subscription at Stripe, the same order
    assert subscribe(buyer, "advanced_monthly") == order_id
    assert len(sandbox.stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1


def test_status_poll_alone_activates_and_credits_the_first_month(app, buyer, sandbox):
    order_id = subscribe(buyer)
    order = invoice_orders(app)[0]
    browser_confirm(sandbox, order.stripe_payment_intent_id)  # the Payment Element
    state = buyer.get(f"/orders/{order_id}/status").get_json()
    assert state["order_status"] == "paid" and state["points_credited"] == 500
    assert sandbox.stripe.v1.subscriptions.retrieve(order.stripe_subscription_id).status == "active"
    assert sub_row(app).status == "active"
    assert ledger(app) == [(f"invoice:{order.stripe_invoice_id}", 500)]
    assert invoice_orders(app)[0].method == "subscription_invoice"


def test_saved_card_pays_the_first_invoice_and_becomes_the_subscriptions_card(app, buyer, sandbox):
    _order_id, card = subscribed(app, buyer, sandbox)
    assert invoice_orders(app)[0].method == "subscription_invoice"
    sub = stripe_sub(sandbox, app)
    assert sub.status == "active" and sub.default_payment_method == card.id
    assert balance(app) == 500
    page = buyer.get("/account/billing").get_data(as_text=True)
    assert "Starter Plan" in page and "active" in page and "Next renewal" in page


def test_saved_3ds_card_needs_authentication_for_the_first_invoice(app, buyer, sandbox):
    card = save_card(app, sandbox, "pm_card_authenticationRequired")
    order_id = subscribe(buyer)
    reply = pay_saved(buyer, order_id, card.id).get_json()
    assert reply["order_status"] == "requires_action" and reply["client_secret"]
    assert authenticated_then_polled(app, buyer, sandbox, invoice_orders(app)[0], order_id) == "paid"
    assert sub_row(app).status == "active" and balance(app) == 500


# --- renewals through the sandbox clock ---------------------------------------------------------


def test_three_renewals_credit_exactly_three_more_months(app, buyer, sandbox, webhooks):
    subscribed(app, buyer, sandbox)
    flush(sandbox)
    for _ in range(3):
        advance(sandbox)
        flush(sandbox)
    orders = invoice_orders(app)
    assert len(orders) == 4 and all(o.status == "paid" for o in orders)
    assert [o.amount for o in orders] == [500] * 4
    assert len({o.stripe_invoice_id for o in orders}) == 4
    keys = [key for key, _ in ledger(app)]
    assert keys == [f"invoice:{o.stripe_invoice_id}" for o in orders]
    assert balance(app) == 4 * 500
    # the account page's own sync (a lost webhook's safety net) credits nothing more
    buyer.get("/account/billing")
    assert balance(app) == 2000 and len(ledger(app)) == 4
    row = sub_row(app)
    sub = stripe_sub(sandbox, app)
    assert row.status == "active"
    assert int(found(row.current_period_end, "current_period_end").timestamp()) == sub.items.data[0].current_period_end
    assert row.latest_invoice_id == orders[-1].stripe_invoice_id


def test_renewals_without_webhooks_are_credited_by_the_account_page(app, buyer, sandbox):
    subscribed(app, buyer, sandbox)
    advance(sandbox)
    page = catch_up(buyer)
    assert balance(app) == 1000 and len(invoice_orders(app)) == 2
    assert page.count("View invoice") == 2


def test_failed_renewal_goes_past_due_then_another_card_pays_it_once(app, buyer, sandbox, webhooks):
    subscribed(app, buyer, sandbox)
    failing = save_card(app, sandbox, "pm_card_chargeCustomerFail")
    assert buyer.post(f"/account/cards/{failing.id}/default").status_code == 303
    assert stripe_sub(sandbox, app).default_payment_method == failing.id
    flush(sandbox)
    advance(sandbox)
    flush(sandbox)
    assert stripe_sub(sandbox, app).status == "past_due"
    assert sub_row(app).status == "past_due"
    assert balance(app) == 500
    page = buyer.get("/").get_data(as_text=True)
    assert "plan failed." in page
    row = sub_row(app)
    response = buyer.post(f"/account/subscription/{row.public_id}/pay")
    assert response.status_code == 303
    order_id = found(re.fullmatch(r"/orders/(ord_[\w-]+)/pay", response.headers["Location"]), "order URL").group(1)
    good = save_card(app, sandbox, "pm_card_mastercard")
    reply = pay_saved(buyer, order_id, good.id).get_json()
    assert reply["order_status"] == "paid", reply
    flush(sandbox)
    assert stripe_sub(sandbox, app).status == "active"
    assert sub_row(app).status == "active"
    assert balance(app) == 1000 and len(ledger(app)) == 2
    assert "plan failed." not in buyer.get("/").get_data(as_text=True)
    orders = invoice_orders(app)
    assert [o.status for o in orders] == ["paid", "paid"] and orders[1].public_id == order_id


def test_failed_renewal_paid_after_3ds_authentication(app, buyer, sandbox):
    subscribed(app, buyer, sandbox)
    failing = save_card(app, sandbox, "pm_card_chargeCustomerFail")
    buyer.post(f"/account/cards/{failing.id}/default")
    advance(sandbox)
    catch_up(buyer)  # no webhooks: the account page catches up
    row = sub_row(app)
    assert row.status == "past_due"
    location = buyer.post(f"/account/subscription/{row.public_id}/pay").headers["Location"]
    order_id = location.split("/")[2]
    card = save_card(app, sandbox, "pm_card_authenticationRequired")
    reply = pay_saved(buyer, order_id, card.id).get_json()
    assert reply["order_status"] == "requires_action"
    pi = invoice_orders(app)[1].stripe_payment_intent_id
    sandbox.control("POST", f"/_sandbox/authenticate/{pi}", {"outcome": "complete"})
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    assert buyer.get(f"/orders/{order_id}/status").get_json()["order_status"] == "paid"
    assert sub_row(app).status == "active" and balance(app) == 1000


# --- change plan, cancel, resume -------------------------------------------------------------------

AMOUNT_DUE = re.compile(r"data-amount-due>\$([\d,]+\.\d\d)<")
PREVIEW_TOKEN = re.compile(r'name="preview" value="([^"]+)"')


def cents(text: str) -> int:
    return int(text.replace(",", "").replace(".", ""))


def preview(client, row, plan):
    """The change-plan page: (html, amount shown, signed preview token)."""
    page = client.get(f"/account/subscription/{row.public_id}/change/{plan}")
    if page.status_code != 200:  # a refusal: say which (the flash on the page it redirects to)
        refused = client.get(page.location).get_data(as_text=True) if page.location else ""
        flashes = re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', refused, re.S)
        raise AssertionError(f"change-plan page answered {page.status_code}: {flashes}")
    html = page.get_data(as_text=True)
    token = PREVIEW_TOKEN.search(html)
    return html, cents(found(AMOUNT_DUE.search(html), "amount due").group(1)), token.group(1) if token else ""


def confirm(client, row, token, **forged):
    return client.post(f"/account/subscription/{row.public_id}/change", data={"preview": token, **forged})


def period(sandbox, app) -> tuple[int, int]:
    item = stripe_sub(sandbox, app).items.data[0]
    return item.current_period_start, item.current_period_end


def upcoming(sandbox, app):
    return sandbox.stripe.v1.invoices.create_preview(params={"subscription": sub_row(app).stripe_subscription_id})


def proration_total(invoice) -> int:
    return sum(line.amount for line in invoice.lines.data if line.parent.subscription_item_details.proration)


def stripe_invoices(sandbox, app):
    return sorted(
        sandbox.stripe.v1.invoices.list(params={"customer": customer_id(app), "limit": 100}).data,
        key=lambda i: i.created,
    )


def test_an_upgrade_is_charged_now_as_previewed_and_the_renewal_is_the_new_price(app, buyer, sandbox, webhooks):
    subscribed(app, buyer, sandbox)
    advance(sandbox, 15 * 86400)
    row = sub_row(app)
    html, due, token = preview(buyer, row, "advanced_monthly")
    assert "Charged now" in html and "Unused time" in html and "Remaining time" in html
    assert 300 < due < 700  # about half a month of the $10 difference
    assert 'name="proration_date"' not in html
    response = confirm(buyer, row, token)
    assert response.status_code == 303 and response.headers["Location"] == "/account/billing"
    flash_page = buyer.get("/account/billing").get_data(as_text=True)
    assert f"${due // 100}.{due % 100:02d} was charged now" in flash_page
    sub = stripe_sub(sandbox, app)
    assert sub.items.data[0].price.lookup_key == "advanced_monthly"
    upgrade = stripe_invoices(sandbox, app)[-1]
    assert (upgrade.billing_reason, upgrade.status, upgrade.amount_paid) == ("subscription_update", "paid", due)
    orders = invoice_orders(app)
    assert [(o.amount, o.status, o.points) for o in orders] == [(500, "paid", 500), (due, "paid", 0)]
    assert orders[1].lookup_key == "advanced_monthly"
    assert balance(app) == 500  # points follow the monthly invoices
    # the same preview confirmed again changes nothing more
    again = confirm(buyer, row, token, plan="advanced_monthly")
    assert again.status_code in (303, 409)
    assert len(stripe_invoices(sandbox, app)) == 2
    advance(sandbox, 20 * 86400)
    flush(sandbox)
    renewal = invoice_orders(app)[-1]
    assert (renewal.amount, renewal.points, renewal.lookup_key) == (1500, 2000, "advanced_monthly")
    assert balance(app) == 500 + 2000
    catch_up(buyer)
    assert balance(app) == 2500 and len(invoice_orders(app)) == 3


def test_a_downgrade_credits_the_next_invoice_as_previewed(app, buyer, sandbox, webhooks):
    subscribed(app, buyer, sandbox, "advanced_monthly")
    advance(sandbox, 20 * 86400)
    row = sub_row(app)
    html, due, token = preview(buyer, row, "starter_monthly")
    assert "Your next invoice" in html and "Nothing is charged now" in html
    assert confirm(buyer, row, token).status_code == 303
    assert len(stripe_invoices(sandbox, app)) == 1  # nothing charged now
    assert upcoming(sandbox, app).amount_due == due
    assert stripe_sub(sandbox, app).items.data[0].price.lookup_key == "starter_monthly"


def test_a_buyer_cannot_choose_the_proration_date_of_a_downgrade(app, buyer, sandbox):
    """The $99 credit: Professional -> Starter near the period end, the form's
    ``proration_date`` set to the period start. Only the server's preview counts."""
    subscribed(app, buyer, sandbox, "professional_monthly")
    start, end = period(sandbox, app)
    advance(sandbox, (end - start) - 2 * 86400)  # two days before the renewal
    row = sub_row(app)
    html, _due, token = preview(buyer, row, "starter_monthly")
    shown = [
        cents(m) * (-1 if sign else 1) for sign, m in re.findall(r'<td class="num">(-?)\$([\d,]+\.\d\d)</td>', html)
    ]
    honest = sum(shown[:-1])  # the lines but the next month's
    assert -1000 < honest < 0
    response = confirm(buyer, row, token, plan="starter_monthly", proration_date=str(start), attempt="forged")
    assert response.status_code == 303
    assert proration_total(upcoming(sandbox, app)) == honest  # not -$94.00


def test_a_buyer_cannot_choose_the_proration_date_of_an_upgrade(app, buyer, sandbox):
    """The $99 renewal: Starter -> Professional with the form's ``proration_date`` near the
    period end. The upgrade is charged now, at the previewed amount and date."""
    subscribed(app, buyer, sandbox)
    _start, end = period(sandbox, app)
    advance(sandbox, 10 * 86400)
    row = sub_row(app)
    _html, due, token = preview(buyer, row, "professional_monthly")
    assert due > 5000
    response = confirm(buyer, row, token, plan="professional_monthly", proration_date=str(end - 60), attempt="forged")
    assert response.status_code == 303
    upgrade = stripe_invoices(sandbox, app)[-1]
    assert (upgrade.billing_reason, upgrade.status, upgrade.amount_paid) == ("subscription_update", "paid", due)
    assert upcoming(sandbox, app).amount_due == 9900


@pytest.mark.parametrize("spoil", ["tampered", "expired", "price_changed", "plan_changed", "missing"])
def test_a_stale_preview_is_refused_and_shown_again(app, buyer, sandbox, spoil, monkeypatch):
    from storefront.models import Price
    from storefront.services import plan_changes

    subscribed(app, buyer, sandbox)
    advance(sandbox, 5 * 86400)
    row = sub_row(app)
    _html, _due, token = preview(buyer, row, "advanced_monthly")
    if spoil == "tampered":
        token = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    elif spoil == "expired":
        monkeypatch.setattr(plan_changes, "PREVIEW_MAX_AGE", -1)
    elif spoil == "price_changed":
        with app.app_context():
            db.session.execute(db.update(Price).where(Price.lookup_key == "advanced_monthly").values(unit_amount=1400))
            db.session.commit()
    elif spoil == "plan_changed":  # another tab moved to Professional since this preview
        _h, _d, other = preview(buyer, row, "professional_monthly")
        assert confirm(buyer, row, other).status_code == 303
    elif spoil == "missing":
        token = ""
    invoices_before = len(stripe_invoices(sandbox, app))
    lookup_before = stripe_sub(sandbox, app).items.data[0].price.lookup_key
    response = confirm(buyer, row, token, plan="advanced_monthly", proration_date="1")
    html = response.get_data(as_text=True)
    assert response.status_code == 409, html[:300]
    assert "review the change again" in html and "data-preview-stale" in html
    assert PREVIEW_TOKEN.search(html)  # a fresh preview to confirm instead
    assert stripe_sub(sandbox, app).items.data[0].price.lookup_key == lookup_before
    assert len(stripe_invoices(sandbox, app)) == invoices_before
    as_json = buyer.post(
        f"/account/subscription/{row.public_id}/change", data={"preview": token}, headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 409
    assert as_json.get_json()["error"]["code"] in ("preview_stale", "price_not_found")


def test_an_upgrade_then_cancel_at_period_end_is_still_paid(app, buyer, sandbox, webhooks):
    """Issue 10, finding 6: Starter paid, upgraded to Professional, canceled at period end:
    the upgrade's prorated amount is invoiced and paid at once, not lost with the renewal."""
    subscribed(app, buyer, sandbox)
    advance(sandbox, 12 * 86400)
    row = sub_row(app)
    _html, due, token = preview(buyer, row, "professional_monthly")
    assert confirm(buyer, row, token).status_code == 303
    assert buyer.post(f"/account/subscription/{row.public_id}/cancel", data={"attempt": "end"}).status_code == 303
    advance(sandbox, 25 * 86400)
    flush(sandbox)
    assert stripe_sub(sandbox, app).status == "canceled"
    invoices = stripe_invoices(sandbox, app)
    assert [(i.billing_reason, i.status, i.amount_paid) for i in invoices] == [
        ("subscription_create", "paid", 500),
        ("subscription_update", "paid", due),
    ]
    assert [(o.amount, o.status) for o in invoice_orders(app)] == [(500, "paid"), (due, "paid")]
    assert balance(app) == 500


def test_a_downgrade_upgrade_round_trip_mints_no_points(app, buyer, sandbox, webhooks):
    """An upgrade's invoice carries no points: else a downgrade (credit pending) followed by an
    upgrade (an invoice of $0.00, "paid" from that credit) would credit a month of points."""
    subscribed(app, buyer, sandbox, "advanced_monthly")
    assert balance(app) == 2000
    advance(sandbox, 10 * 86400)
    row = sub_row(app)
    _html, _due, token = preview(buyer, row, "starter_monthly")
    assert confirm(buyer, row, token).status_code == 303
    _html, due, token = preview(buyer, sub_row(app), "advanced_monthly")
    assert due == 0  # the pending credit pays for it
    assert confirm(buyer, row, token).status_code == 303
    flush(sandbox)
    catch_up(buyer)
    upgrade = stripe_invoices(sandbox, app)[-1]
    assert (upgrade.billing_reason, upgrade.status, upgrade.amount_paid) == ("subscription_update", "paid", 0)
    assert balance(app) == 2000 and len(ledger(app)) == 1


@pytest.mark.parametrize("card", ["pm_card_authenticationRequired", "pm_card_chargeCustomerFail"])
def test_an_upgrade_the_bank_does_not_charge_sends_the_buyer_to_pay_it(app, buyer, sandbox, card):
    subscribed(app, buyer, sandbox)
    hard = save_card(app, sandbox, card)
    assert buyer.post(f"/account/cards/{hard.id}/default").status_code == 303
    advance(sandbox, 10 * 86400)
    row = sub_row(app)
    _html, due, token = preview(buyer, row, "advanced_monthly")
    response = confirm(buyer, row, token)
    assert response.status_code == 303
    order_id = found(re.fullmatch(r"/orders/(ord_[\w-]+)/pay", response.headers["Location"]), "order URL").group(1)
    order = invoice_orders(app)[-1]
    assert (order.public_id, order.amount, order.points) == (order_id, due, 0)
    page = buyer.get(response.headers["Location"]).get_data(as_text=True)
    assert "still needs to be paid" in page
    if card == "pm_card_authenticationRequired":
        reply = pay_saved(buyer, order_id, hard.id).get_json()
        assert reply["order_status"] == "requires_action"
        assert authenticated_then_polled(app, buyer, sandbox, invoice_orders(app)[-1], order_id) == "paid"
    else:
        good = save_card(app, sandbox, "pm_card_mastercard")
        assert pay_saved(buyer, order_id, good.id).get_json()["order_status"] == "paid"
    upgrade = stripe_invoices(sandbox, app)[-1]
    assert (upgrade.billing_reason, upgrade.status, upgrade.amount_paid) == ("subscription_update", "paid", due)
    catch_up(buyer)
    assert sub_row(app).status == "active" and balance(app) == 500


def test_cancel_at_period_end_then_resume_then_cancel_ends_it(app, buyer, sandbox, webhooks):
    subscribed(app, buyer, sandbox)
    row = sub_row(app)
    assert buyer.post(f"/account/subscription/{row.public_id}/cancel").status_code == 303
    assert stripe_sub(sandbox, app).cancel_at_period_end is True
    assert sub_row(app).cancel_at_period_end is True
    assert "Resume subscription" in buyer.get("/account/billing").get_data(as_text=True)
    assert buyer.post(f"/account/subscription/{row.public_id}/resume").status_code == 303
    assert stripe_sub(sandbox, app).cancel_at_period_end is False
    assert sub_row(app).cancel_at_period_end is False
    buyer.post(f"/account/subscription/{row.public_id}/cancel", data={"attempt": "again"})
    advance(sandbox)
    flush(sandbox)
    assert stripe_sub(sandbox, app).status == "canceled"
    assert sub_row(app).status == "canceled" and sub_row(app).ended_at is not None
    assert balance(app) == 500  # no renewal
    assert "Subscribe to Starter Plan" in buyer.get("/account/billing").get_data(as_text=True)


def test_a_read_sent_before_our_write_never_undoes_it(app, buyer, sandbox):
    """A webhook's re-fetch sent before the buyer's cancel, answered after it (Stripe read the old
    state, then was slow to answer): it arrives last but must not undo the cancel. A read sent
    after the write's answer arrived is applied as usual."""
    from storefront.models.base import utcnow

    subscribed(app, buyer, sandbox)
    row = sub_row(app)
    asked = utcnow()
    stale = stripe_sub(sandbox, app).to_dict()  # the state before the cancel
    assert stale["cancel_at_period_end"] is False
    assert buyer.post(f"/account/subscription/{row.public_id}/cancel").status_code == 303
    with app.app_context():
        subscription_sync.apply_subscription(stale, source="event", fetched_at=utcnow(), asked_at=asked)
        db.session.commit()
    assert sub_row(app).cancel_at_period_end is True
    with app.app_context():  # the same answer, had it been asked for after the cancel: newer news
        subscription_sync.apply_subscription(stale, source="event", fetched_at=utcnow(), asked_at=utcnow())
        db.session.commit()
    assert sub_row(app).cancel_at_period_end is False


def test_only_admins_cancel_immediately(app, client, auth, catalog, sandbox):
    auth.signup(email="buyer@example.com")
    subscribed(app, client, sandbox)
    row = sub_row(app)
    assert client.post(f"/account/subscription/{row.public_id}/cancel-now").status_code == 404
    assert stripe_sub(sandbox, app).status == "active"
    auth.logout()
    with app.app_context():
        from storefront.services.accounts import create_or_promote_admin

        create_or_promote_admin("admin@example.com", "admin-pass-2024-long", "Ada")
    auth.login(email="admin@example.com", password="admin-pass-2024-long")
    response = client.post(f"/account/subscription/{row.public_id}/cancel-now")
    assert response.status_code == 303
    assert stripe_sub(sandbox, app).status == "canceled"
    assert sub_row(app).status == "canceled"


# --- Checkout -----------------------------------------------------------------------------------------


def test_subscribe_through_checkout(app, buyer, sandbox, webhooks):
    response = buyer.post("/account/subscribe/professional_monthly", data={"method": "checkout"})
    assert response.status_code == 303
    order = invoice_orders(app)[0]
    assert response.headers["Location"] == f"{sandbox.url}/c/pay/{order.stripe_checkout_session_id}"
    session = sandbox.stripe.v1.checkout.sessions.retrieve(order.stripe_checkout_session_id)
    assert session.mode == "subscription" and session.client_reference_id == order.public_id
    sandbox.control(
        "POST", f"/_sandbox/checkout/{order.stripe_checkout_session_id}/pay", {"payment_method": "pm_card_visa"}
    )
    page = buyer.get(f"/orders/{order.public_id}?session_id={session.id}").get_data(as_text=True)
    assert "Payment of $99.00 received" in page
    flush(sandbox)
    orders = invoice_orders(app)
    assert len(orders) == 1 and orders[0].status == "paid" and orders[0].stripe_invoice_id
    assert sub_row(app).status == "active" and sub_row(app).price_id is not None
    assert ledger(app) == [(f"invoice:{orders[0].stripe_invoice_id}", 15000)]


# --- Lifetime ---------------------------------------------------------------------------------------


def test_lifetime_while_subscribed_ends_the_subscription_at_period_end(app, buyer, sandbox):
    subscribed(app, buyer, sandbox)
    card = save_card(app, sandbox, "pm_card_mastercard")
    assert buyer.post("/buy/lifetime").status_code == 303
    with app.app_context():
        order = found(db.session.scalar(select(Order).where(Order.lookup_key == "lifetime")), "lifetime order")
    reply = pay_saved(buyer, order.public_id, card.id).get_json()
    assert reply["order_status"] == "paid"
    assert stripe_sub(sandbox, app).cancel_at_period_end is True
    assert sub_row(app).cancel_at_period_end is True
    page = buyer.get("/account/billing").get_data(as_text=True)
    assert "data-ends" in page and "Resume subscription" not in page
    row = sub_row(app)
    refused = buyer.post(f"/account/subscription/{row.public_id}/resume", headers={"Accept": "application/json"})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "already_owned"
    assert stripe_sub(sandbox, app).cancel_at_period_end is True
    advance(sandbox)
    catch_up(buyer)
    assert sub_row(app).status == "canceled"
    page = buyer.get("/account/billing").get_data(as_text=True)
    assert "You own the <strong>Lifetime</strong> plan" in page and "Subscribe to" not in page
    refused = buyer.post("/account/subscribe/starter_monthly", headers={"Accept": "application/json"})
    assert refused.status_code == 409
    assert len(sandbox.stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1


def test_one_live_subscription_per_buyer(app, buyer, sandbox):
    subscribed(app, buyer, sandbox)
    response = buyer.post(
        "/account/subscribe/advanced_monthly", data={"attempt": "x"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "already_subscribed"
    assert len(sandbox.stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1


def test_an_unpaid_start_is_replaced_by_another_plan(app, buyer, sandbox):
    subscribe(buyer, "starter_monthly")
    first = sub_row(app)
    subscribe(buyer, "advanced_monthly", attempt="a2")
    subs = sandbox.stripe.v1.subscriptions.list(params={"status": "all"}).data
    assert sorted(s.status for s in subs) == ["canceled", "incomplete"]
    assert sandbox.stripe.v1.subscriptions.retrieve(first.stripe_subscription_id).status == "canceled"


# --- duplicates, out of order, races ----------------------------------------------------------------


def test_duplicate_events_credit_once(app, buyer, sandbox, webhooks):
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"duplicate": True})
    subscribed(app, buyer, sandbox)
    advance(sandbox)
    flush(sandbox)
    assert balance(app) == 1000 and len(ledger(app)) == 2
    assert len(invoice_orders(app)) == 2
    assert sub_row(app).status == "active"


def test_out_of_order_subscription_events_leave_the_final_state(app, buyer, sandbox, webhooks):
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    subscribed(app, buyer, sandbox)
    row = sub_row(app)
    buyer.post(f"/account/subscription/{row.public_id}/cancel", data={"attempt": "1"})
    buyer.post(f"/account/subscription/{row.public_id}/resume", data={"attempt": "2"})
    buyer.post(f"/account/subscription/{row.public_id}/cancel", data={"attempt": "3"})
    # our row is already right (each action applied Stripe's answer); make it wrong on purpose
    with app.app_context():
        db.session.execute(
            db.update(Subscription).values(cancel_at_period_end=False, status="incomplete", fetched_at=None)
        )
        db.session.commit()
    sandbox.control("DELETE", "/_sandbox/webhooks/faults")
    released = sandbox.control("POST", "/_sandbox/webhooks/release", {"newest_first": True})
    assert released["released"] >= 5
    flush(sandbox)
    row = sub_row(app)
    assert (row.status, row.cancel_at_period_end) == ("active", True)
    assert balance(app) == 500 and len(ledger(app)) == 1


def test_a_stale_fetch_never_overwrites_a_newer_one(app, buyer, sandbox):
    subscribed(app, buyer, sandbox)
    sub = stripe_sub(sandbox, app).to_dict()
    from datetime import timedelta

    with app.app_context():
        row = found(db.session.scalar(select(Subscription)), "subscription")
        newer = row.fetched_at
        stale = dict(sub, status="past_due")
        subscription_sync.apply_subscription(stale, source="test", fetched_at=newer - timedelta(seconds=1))
        db.session.commit()
        assert db.session.scalar(select(Subscription.status)) == "active"


def test_a_fetch_answered_before_a_slower_write_does_not_overwrite_it(app, buyer, sandbox):
    """Answers are ordered by when they arrived, not when their request started: a webhook's fetch
    that starts while the buyer's write is still waiting at Stripe (here: held 1 s by the
    sandbox) is answered first, with the old state; the write's later answer must still apply.
    (Ordered by start, the write lost and the row kept the old plan: a flaky CI failure.)"""
    subscribed(app, buyer, sandbox)
    row = sub_row(app)
    sandbox.fault("delay", count=1, path_prefix=f"/v1/subscriptions/{row.stripe_subscription_id}", seconds=1.0)
    from storefront.services import subscriptions

    def cancel_at_period_end() -> None:
        with app.app_context():
            subscriptions.cancel_at_period_end(found(db.session.get(Subscription, row.id), "row"), attempt="slow")
            db.session.remove()

    writer = threading.Thread(target=cancel_at_period_end)
    writer.start()
    time.sleep(0.3)  # the write is now held at Stripe; this fetch is answered at once
    with app.app_context():
        refreshed = found(subscriptions.refresh(row.stripe_subscription_id, source="webhook"), "row")
        assert refreshed.cancel_at_period_end is False  # the old state, applied first
        db.session.remove()
    writer.join(10)
    assert not writer.is_alive()
    assert stripe_sub(sandbox, app).cancel_at_period_end is True
    assert sub_row(app).cancel_at_period_end is True


def test_webhook_and_sync_racing_on_one_renewal_credit_once(app, buyer, sandbox):
    subscribed(app, buyer, sandbox)
    advance(sandbox)
    invoice_id = stripe_sub(sandbox, app).latest_invoice
    from storefront.services import subscriptions

    errors = []

    def apply():
        try:
            with app.app_context():
                invoice = sandbox.stripe.v1.invoices.retrieve(invoice_id, params={"expand": ["payments"]}).to_dict()
                subscriptions.apply_paid_invoice(invoice, source="race")
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - any failure in a thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert balance(app) == 1000 and len(invoice_orders(app)) == 2
    assert ledger(app)[-1] == (f"invoice:{invoice_id}", 500)


# --- ownership ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", "resume", "pay", "change", "change/advanced_monthly", "cancel-now"])
def test_a_buyer_cannot_act_on_another_buyers_subscription(app, client, auth, catalog, sandbox, action):
    auth.signup(email="victim@example.com")
    subscribed_victim = save_card(app, sandbox, email="victim@example.com")
    order_id = subscribe(client)
    pay_saved(client, order_id, subscribed_victim.id)
    victim = sub_row(app, "victim@example.com")
    auth.logout()
    auth.signup(email="thief@example.com")
    path = f"/account/subscription/{victim.public_id}/{action}"
    response = (
        client.get(path)
        if action.startswith("change/")
        else client.post(path, data={"plan": "advanced_monthly", "attempt": "t"})
    )
    assert response.status_code == 404
    sub = sandbox.stripe.v1.subscriptions.retrieve(victim.stripe_subscription_id)
    assert sub.status == "active" and sub.cancel_at_period_end is False
    assert sub.items.data[0].price.lookup_key == "starter_monthly"


def test_cannot_pay_a_subscription_invoice_with_another_buyers_card(app, client, auth, catalog, sandbox):
    auth.signup(email="victim@example.com")
    victim_card = save_card(app, sandbox, email="victim@example.com")
    auth.logout()
    auth.signup(email="thief@example.com")
    order_id = subscribe(client)
    response = pay_saved(client, order_id, victim_card.id)
    assert response.status_code == 404
    assert sub_row(app, "thief@example.com").status == "incomplete"
