"""The hosted Checkout page (a Checkout Session's ``url``) in a real browser."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from playwright.sync_api import expect

from .test_payment_element import challenge_frame, fill_card


def create_session(stripe_client, shop, **extra):
    params = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "usd", "unit_amount": 1500, "product_data": {"name": "Storefront T-shirt"}},
                "quantity": 2,
            },
            {
                "price_data": {"currency": "usd", "unit_amount": 499, "product_data": {"name": "Sticker pack"}},
                "quantity": 1,
            },
        ],
        "success_url": f"{shop.url}/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{shop.url}/cancel",
    }
    params.update(extra)
    return stripe_client.v1.checkout.sessions.create(params=params)


def wait_ready(page):
    expect(page.locator("#pay")).to_be_enabled()


def post_confirm(sandbox_url: str, session_id: str, payment_method: str):
    request = urllib.request.Request(
        f"{sandbox_url}/c/pay/{session_id}/confirm",
        method="POST",
        data=json.dumps({"payment_method": payment_method}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pay_on_hosted_page_lands_on_success_url(page, shop, stripe_client, stripe_sandbox):
    session = create_session(stripe_client, shop)
    assert session.url == f"{stripe_sandbox.url}/c/pay/{session.id}"
    page.goto(session.url)
    expect(page.get_by_text("Storefront (sandbox)").first).to_be_visible()
    expect(page.locator("#total")).to_have_text("$34.99")
    items = page.get_by_role("list", name="Line items")
    expect(items.get_by_text("Storefront T-shirt")).to_be_visible()
    expect(items.get_by_text("Qty 2 · $15.00 each")).to_be_visible()
    expect(items.get_by_text("$30.00")).to_be_visible()
    expect(items.get_by_text("Sticker pack")).to_be_visible()
    expect(page.get_by_role("link", name="← Back")).to_have_attribute("href", f"{shop.url}/cancel")
    wait_ready(page)
    page.get_by_label("Email").fill("buyer@example.com")
    fill_card(page, "4242 4242 4242 4242")
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(r"/success\?session_id="))
    expect(page.locator("#session")).to_have_text(session.id)
    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert paid.status == "complete" and paid.payment_status == "paid"
    assert paid.customer_details.email == "buyer@example.com"
    pi = stripe_client.v1.payment_intents.retrieve(paid.payment_intent)
    assert pi.status == "succeeded" and pi.amount == 3499
    types = [e.type for e in stripe_client.v1.events.list(params={"limit": 100}).data]
    assert "checkout.session.completed" in types
    # Coming back: the session says it is paid and takes nothing more.
    page.goto(session.url)
    expect(page.get_by_text("This Checkout Session is already paid")).to_be_visible()
    expect(page.locator("#payment-element")).to_have_count(0)
    status, body = post_confirm(stripe_sandbox.url, session.id, "pm_card_visa")
    assert status == 409 and body["status"] == "complete"
    assert len(stripe_client.v1.charges.list(params={"limit": 10}).data) == 1


def test_decline_then_three_d_secure_card(page, shop, stripe_client):
    session = create_session(stripe_client, shop, customer_email="known@example.com")
    page.goto(session.url)
    expect(page.locator("#email-static")).to_have_text("known@example.com")
    wait_ready(page)
    fill_card(page, "4000 0000 0000 0002")
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#form-error")).to_have_text("Your card was declined.")
    expect(page.get_by_role("button", name="Pay")).to_be_enabled()
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"
    # retry with a card that needs 3-D Secure; fail it first, then complete it
    page.get_by_label("Card number").fill("4000 0025 0000 3155")
    page.get_by_role("button", name="Pay").click()
    _, frame = challenge_frame(page)
    expect(frame.get_by_text("$34.99")).to_be_visible()
    frame.get_by_role("button", name="Fail authentication").click()
    expect(page.locator("#form-error")).to_contain_text("We are unable to authenticate")
    page.get_by_role("button", name="Pay").click()
    _, frame = challenge_frame(page)
    frame.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(re.compile(r"/success\?session_id=" + session.id))
    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert paid.status == "complete" and paid.payment_status == "paid"


def test_expired_session_cannot_be_paid(page, shop, stripe_client, stripe_sandbox):
    session = create_session(stripe_client, shop)
    stripe_client.v1.checkout.sessions.expire(session.id)
    page.goto(session.url)
    expect(page.get_by_text("This Checkout Session has expired")).to_be_visible()
    expect(page.get_by_role("button", name="Pay")).to_have_count(0)
    status, body = post_confirm(stripe_sandbox.url, session.id, "pm_card_visa")
    assert status == 409 and body["status"] == "expired"
    assert stripe_client.v1.charges.list(params={"limit": 10}).data == []


def test_session_expiring_while_the_page_is_open(page, shop, stripe_client, stripe_sandbox):
    session = create_session(stripe_client, shop)
    page.goto(session.url)
    wait_ready(page)
    page.get_by_label("Email").fill("late@example.com")
    fill_card(page, "4242424242424242")
    stripe_sandbox.advance_clock(25 * 3600)  # past expires_at (24 h by default)
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_text("This Checkout Session has expired")).to_be_visible()
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert stripe_client.v1.charges.list(params={"limit": 10}).data == []


def test_subscription_mode(page, shop, stripe_client):
    price = stripe_client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Storefront Plus"},
        }
    )
    session = stripe_client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": f"{shop.url}/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{shop.url}/cancel",
            "customer_email": "member@example.com",
        }
    )
    page.goto(session.url)
    expect(page.get_by_text("billed per month")).to_be_visible()
    wait_ready(page)
    fill_card(page, "4242 4242 4242 4242")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url(re.compile(r"/success\?session_id=" + session.id))
    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert paid.status == "complete" and paid.payment_status == "paid"
    assert stripe_client.v1.subscriptions.retrieve(paid.subscription).status == "active"


def test_delayed_method_redirects_while_unpaid(page, shop, stripe_client, stripe_sandbox):
    session = stripe_client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {"currency": "eur", "unit_amount": 2000, "product_data": {"name": "Poster"}},
                    "quantity": 1,
                }
            ],
            "allowed_payment_method_types": ["card", "sepa_debit"],
            "success_url": f"{shop.url}/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{shop.url}/cancel",
        }
    )
    page.goto(session.url)
    expect(page.locator("#total")).to_have_text("€20.00")
    wait_ready(page)
    page.locator("#email").fill("jenny@example.com")
    page.get_by_role("tab", name="SEPA Direct Debit").click()
    page.get_by_label("Full name").fill("Jenny Rosen")
    page.get_by_label("IBAN").fill("AT611904300234573201")
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(r"/success\?session_id=" + session.id))
    pending = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert pending.status == "complete" and pending.payment_status == "unpaid"
    stripe_sandbox.advance_clock(10)
    settled = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert settled.payment_status == "paid"
    types = [e.type for e in stripe_client.v1.events.list(params={"limit": 100}).data]
    assert "checkout.session.async_payment_succeeded" in types
