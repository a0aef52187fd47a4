"""Headless Chromium against the real store and the sandbox: saved cards and subscriptions.

Store fixtures from tests/conftest.py (`app`, `sandbox`, `sandbox_server`), browser fixtures from
tests/browser/conftest.py (`page`). The store runs with CSRF on, as in production; no webhook
endpoint is registered, so the status page's own polling is what settles each payment."""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.serving import make_server

from storefront import create_app
from storefront.extensions import db
from storefront.models import Subscription, User
from tests.conftest import TEST_PASSWORD, found, make_config

from .test_payment_element import challenge_frame, fill_card


@pytest.fixture
def store(app, database_url, sandbox_server, sandbox):
    shop = create_app(make_config(database_url, sandbox_server.url, WTF_CSRF_ENABLED=True))
    with shop.app_context():
        from storefront.services.catalog import sync_catalog

        sync_catalog()
    server = make_server("127.0.0.1", 0, shop, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def shopper(store, page):
    """A buyer signed up (and logged in) through the store's own form."""
    page.goto(store + "/signup")
    page.get_by_label("Email").fill("buyer@example.com")
    page.get_by_label("Name").fill("Bea Buyer")
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Confirm password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(store + "/")
    return store


def customer_id(app) -> str:
    with app.app_context():
        return found(db.session.scalar(select(User.stripe_customer_id)), "Stripe customer")


def subscription(app) -> Subscription:
    with app.app_context():
        row = found(db.session.scalar(select(Subscription).order_by(Subscription.id.desc())), "subscription")
        db.session.expunge(row)
        return row


def add_card(page, store, number):
    page.goto(store + "/account/cards")
    page.get_by_role("link", name="Add a card").click()
    expect(page.locator("[data-submit]")).to_be_enabled()
    fill_card(page, number)
    page.get_by_role("button", name="Save card").click()


def test_saved_cards_add_3ds_default_remove(shopper, page, app, sandbox):
    store = shopper
    add_card(page, store, "4242 4242 4242 4242")
    page.wait_for_url(store + "/account/cards")
    expect(page.locator(".flashes")).to_contain_text("Visa ending in 4242 was saved")
    visa = page.locator("li[data-card]", has_text="ending in 4242")
    expect(visa.locator("[data-default]")).to_be_visible()  # the first card is the default

    add_card(page, store, "4000 0025 0000 3155")  # asks for 3-D Secure when saved
    _dialog, frame = challenge_frame(page)
    frame.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(store + "/account/cards")
    secure = page.locator("li[data-card]", has_text="ending in 3155")
    expect(secure).to_be_visible()
    expect(secure.locator("[data-default]")).to_have_count(0)

    secure.get_by_role("button", name=re.compile("Make .* default")).click()
    expect(page.locator(".flashes")).to_contain_text("default card was changed")
    secure = page.locator("li[data-card]", has_text="ending in 3155")
    expect(secure.locator("[data-default]")).to_be_visible()
    customer = sandbox.stripe.v1.customers.retrieve(customer_id(app))
    assert customer.invoice_settings.default_payment_method == secure.get_attribute("data-card")

    page.locator("li[data-card]", has_text="ending in 4242").get_by_role("button", name=re.compile("Remove")).click()
    expect(page.locator(".flashes")).to_contain_text("The card was removed")
    expect(page.locator("li[data-card]")).to_have_count(1)
    cards = sandbox.stripe.v1.payment_methods.list(params={"customer": customer_id(app), "type": "card"})
    assert [pm.card.last4 for pm in cards.data] == ["3155"]


def subscribe_on_page(page, store, plan="Starter Plan", checkout=False):
    page.goto(store + "/account/billing")
    form = page.locator("form.plan", has_text=plan)
    if checkout:
        form.get_by_label("Stripe Checkout").check()
    form.get_by_role("button", name=f"Subscribe to {plan}").click()


def wait_paid(page):
    page.wait_for_url(re.compile(r"/orders/ord_[\w-]+($|\?)"))
    expect(page.locator("[data-status-badge]")).to_have_text("paid", timeout=15_000)


def test_subscribe_with_a_saved_card_then_cancel_resume_and_change_plan(shopper, page, app, sandbox):
    store = shopper
    sandbox.stripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id(app)})
    subscribe_on_page(page, store)
    page.wait_for_url(re.compile(r"/pay$"))
    page.get_by_role("button", name="Pay $5.00 with this card").click()
    wait_paid(page)
    expect(page.locator("[data-status-message]")).to_contain_text("500 points were added")

    page.goto(store + "/account/billing")
    expect(page.locator("[data-sub-status]")).to_have_text("active")
    page.get_by_role("button", name="Cancel at period end").click()
    expect(page.locator("[data-ends]")).to_be_visible()
    assert sandbox.stripe.v1.subscriptions.retrieve(subscription(app).stripe_subscription_id).cancel_at_period_end
    page.get_by_role("button", name="Resume subscription").click()
    expect(page.locator(".flashes")).to_contain_text("renew as usual")
    expect(page.locator("[data-ends]")).to_have_count(0)

    page.get_by_role("link", name="Switch to Advanced Plan").click()
    expect(page.locator("[data-change-preview]")).to_contain_text("Unused time")
    expect(page.locator("[data-amount-due]")).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
    page.get_by_role("button", name="Confirm the change").click()
    expect(page.locator(".flashes")).to_contain_text("Your plan has changed")
    expect(page.locator("[data-plan]")).to_contain_text("Advanced Plan")
    sub = sandbox.stripe.v1.subscriptions.retrieve(subscription(app).stripe_subscription_id)
    assert sub.items.data[0].price.lookup_key == "advanced_monthly" and not sub.cancel_at_period_end


def test_subscribe_with_a_new_3ds_card(shopper, page, app, sandbox):
    subscribe_on_page(page, shopper, plan="Advanced Plan")
    page.wait_for_url(re.compile(r"/pay$"))
    expect(page.locator("[data-submit]")).to_be_enabled()
    fill_card(page, "4000 0027 6000 3184")
    page.locator("[data-submit]").click()
    _dialog, frame = challenge_frame(page)
    frame.get_by_role("button", name="Complete authentication").click()
    wait_paid(page)
    page.goto(shopper + "/account/billing")
    expect(page.locator("[data-sub-status]")).to_have_text("active")
    expect(page.locator("[data-plan]")).to_contain_text("Advanced Plan")
    expect(page.locator(".points-chip")).to_contain_text("2,000 pts")


def test_subscribe_through_checkout(shopper, page, app, sandbox):
    subscribe_on_page(page, shopper, plan="Professional Plan", checkout=True)
    page.wait_for_url(re.compile(r"/c/pay/cs_"))
    expect(page.locator("#pay")).to_be_enabled()
    fill_card(page, "4242 4242 4242 4242")
    page.locator("#pay").click()
    wait_paid(page)
    page.goto(shopper + "/account/billing")
    expect(page.locator("[data-sub-status]")).to_have_text("active")
    expect(page.locator("[data-plan]")).to_contain_text("Professional Plan")
    expect(page.locator("table[data-invoices]")).to_contain_text("paid")
