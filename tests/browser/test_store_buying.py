"""Headless Chromium buys points from the REAL store (``live_server``) paying the sandbox.

Each test signs a new buyer up through the store's form, buys a points pack the way a person
would (the store's own pages, the Payment Element served by the sandbox's Stripe.js stand-in,
its 3-D Secure dialog, the hosted Checkout page) and ends on the order's status page, which must
say the right state in plain words and show the right points balance in the header. The sandbox
delivers its webhooks to the live store (``webhooks`` fixture), so the order may be settled by
the webhook or by the status page's own sync, whichever comes first -- as in production.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import Order, PointsEntry, User
from tests.conftest import found

pytestmark = pytest.mark.usefixtures("webhooks", "catalog")

PASSWORD = "a-good-long-passphrase"
DECLINED = "Your card was declined."
AUTH_FAILED = "We are unable to authenticate your payment method."
#: the catalog's points packs: lookup key -> (price shown, points)
SMALL, MEDIUM, LARGE = "points_small", "points_medium", "points_large"
PACKS = {SMALL: ("$2.00", 200), MEDIUM: ("$5.00", 550), LARGE: ("$12.00", 1400)}
STATUS_PAGE = re.compile(r"/orders/[A-Za-z0-9_-]+(\?.*)?$")


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def store(live_server, page):
    """A newcomer signed up (and logged in) through the store's own form; yields its URL."""
    url = live_server.url
    page.goto(url + "/signup")
    page.get_by_label("Email").fill("shopper@example.com")
    page.get_by_label("Name").fill("Sam Shopper")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(url + "/")
    expect(balance_chip(page)).to_have_text(re.compile(r"\b0 pts$"))
    return url


def balance_chip(page):
    return page.locator(".site-header .points-chip")


def start_buying(page, store: str, lookup_key: str, *, method: str = "page", save_card: bool = False) -> None:
    """From the product's page: choose how to pay and continue."""
    page.goto(f"{store}/buy/{lookup_key}")
    if method == "checkout":
        page.get_by_label(re.compile("Stripe Checkout")).check()
    if save_card:
        page.get_by_label(re.compile("Save my card")).check()
    page.get_by_role("button", name=re.compile("Continue to payment")).click()


def open_pay_page(page, store: str, lookup_key: str, **kw) -> None:
    start_buying(page, store, lookup_key, **kw)
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay$"))
    expect(pay_button(page, lookup_key)).to_be_enabled()  # the Payment Element is ready


def pay_button(page, lookup_key: str):
    return page.get_by_role("button", name=f"Pay {PACKS[lookup_key][0]}", exact=True)


def fill_card(page, number: str) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("Security code").fill("123")
    page.get_by_label("ZIP").fill("94107")


def pay_with_new_card(page, lookup_key: str, number: str) -> None:
    fill_card(page, number)
    pay_button(page, lookup_key).click()


def fill_bank_account(page, account: str):
    """The Payment Element's "US bank account" tab (ACH Direct Debit, entered by hand)."""
    page.get_by_role("tab", name="US bank account").click()
    panel = page.locator("[data-method=us_bank_account][role=tabpanel]")
    panel.get_by_label("Full name").fill("Sam Shopper")
    panel.get_by_label("Email").fill("shopper@example.com")
    panel.get_by_label("Routing number").fill("110000000")  # Stripe's test bank
    panel.get_by_label("Account number").fill(account)
    return panel


def challenge(page):
    """The 3-D Secure dialog the Stripe.js stand-in opens; returns its frame."""
    expect(page.get_by_role("dialog", name="Authenticate your payment")).to_be_visible()
    frame = page.frame_locator("[data-sandbox-3ds] iframe")
    expect(frame.get_by_role("heading", name="3D Secure 2 Test Page")).to_be_visible()
    return frame


def pay_error(page):
    return page.locator("[data-pay-error]")


def expect_status_page(page, state: str, balance: int, *, message: str | None = None, timeout: float = 10_000) -> str:
    """On the order's status page: the plain-words state, the message and the header balance.
    Returns the order's public id."""
    page.wait_for_url(STATUS_PAGE, timeout=timeout)
    expect(page.locator("[data-status-badge]")).to_have_text(state, timeout=timeout)
    if message:
        expect(page.locator("[data-status-message]")).to_contain_text(message)
    expect(balance_chip(page)).to_have_text(re.compile(rf"(^|\s){balance:,} pts$"), timeout=timeout)
    return found(re.search(r"/orders/([^/?]+)", page.url), "order id in the URL").group(1)


def paid_message(lookup_key: str) -> str:
    price, points = PACKS[lookup_key]
    return f"Payment of {price} received. {points:,} points were added to your balance."


def assert_books(app, *, orders_paid: int, balance: int) -> None:
    """The database agrees with the page: each paid order credited exactly once."""
    with app.app_context():
        user = found(db.session.scalar(select(User).where(User.email == "shopper@example.com")), "shopper")
        paid = db.session.scalars(select(Order).where(Order.user_id == user.id, Order.status == "paid")).all()
        entries = db.session.scalar(select(func.count(PointsEntry.id)).where(PointsEntry.user_id == user.id))
        assert len(paid) == orders_paid and entries == orders_paid
        assert user.points_balance == balance == sum(o.points for o in paid)
        db.session.remove()


# --- the Payment Element ---------------------------------------------------------------------


def test_points_pack_with_4242(page, store, app):
    open_pay_page(page, store, SMALL)
    expect(page.get_by_role("tab", name="Card")).to_have_attribute("aria-selected", "true")
    pay_with_new_card(page, SMALL, "4242 4242 4242 4242")
    expect_status_page(page, "paid", 200, message=paid_message(SMALL))
    assert_books(app, orders_paid=1, balance=200)


def test_three_d_secure_complete(page, store, app):
    open_pay_page(page, store, MEDIUM)
    pay_with_new_card(page, MEDIUM, "4000 0025 0000 3155")
    challenge(page).get_by_role("button", name="Complete authentication").click()
    expect_status_page(page, "paid", 550, message=paid_message(MEDIUM))
    assert_books(app, orders_paid=1, balance=550)


def test_three_d_secure_failed_then_another_card(page, store, app):
    open_pay_page(page, store, MEDIUM)
    pay_with_new_card(page, MEDIUM, "4000 0025 0000 3155")
    challenge(page).get_by_role("button", name="Fail authentication").click()
    expect(pay_error(page)).to_contain_text(AUTH_FAILED)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(balance_chip(page)).to_have_text(re.compile(r"(^|\s)0 pts$"))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    pay_button(page, MEDIUM).click()
    expect_status_page(page, "paid", 550, message=paid_message(MEDIUM))
    assert_books(app, orders_paid=1, balance=550)


def test_declined_card_then_a_good_one(page, store, app):
    open_pay_page(page, store, LARGE)
    pay_with_new_card(page, LARGE, "4000 0000 0000 0002")
    expect(pay_error(page)).to_have_text(DECLINED)
    expect(pay_button(page, LARGE)).to_be_enabled()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    pay_button(page, LARGE).click()
    expect_status_page(page, "paid", 1400, message=paid_message(LARGE))
    assert_books(app, orders_paid=1, balance=1400)


# --- saved cards -----------------------------------------------------------------------------


def _save_a_card(page, store, number: str, *, three_d_secure: bool = False) -> None:
    open_pay_page(page, store, SMALL, save_card=True)
    expect(page.get_by_text("Pay with a saved card")).to_have_count(0)  # none saved yet
    pay_with_new_card(page, SMALL, number)
    if three_d_secure:
        challenge(page).get_by_role("button", name="Complete authentication").click()
    expect_status_page(page, "paid", 200, message=paid_message(SMALL))


def _pay_with_saved_card(page, store, last4: str) -> None:
    open_pay_page(page, store, MEDIUM)
    saved = page.locator("[data-saved-card-form]")
    expect(saved.get_by_role("radio", name=re.compile(f"ending in {last4}"))).to_be_checked()
    saved.get_by_role("button", name=f"Pay {PACKS[MEDIUM][0]} with this card").click()


def test_saved_card(page, store, app):
    _save_a_card(page, store, "4242 4242 4242 4242")
    _pay_with_saved_card(page, store, "4242")
    expect_status_page(page, "paid", 750, message=paid_message(MEDIUM))
    assert_books(app, orders_paid=2, balance=750)


def test_saved_card_that_needs_three_d_secure(page, store, app):
    _save_a_card(page, store, "4000 0027 6000 3184", three_d_secure=True)
    _pay_with_saved_card(page, store, "3184")
    # the server's confirm came back requires_action: the page runs handleNextAction
    challenge(page).get_by_role("button", name="Complete authentication").click()
    expect_status_page(page, "paid", 750, message=paid_message(MEDIUM))
    assert_books(app, orders_paid=2, balance=750)


# --- Checkout redirect -----------------------------------------------------------------------


def test_checkout_redirect(page, store, sandbox, app):
    start_buying(page, store, LARGE, method="checkout")
    page.wait_for_url(re.compile(re.escape(sandbox.url) + r"/c/pay/cs_"))
    expect(page.locator("#total")).to_have_text(PACKS[LARGE][0])
    expect(page.locator("#pay")).to_be_enabled()
    # the session is for the buyer's Stripe customer: Checkout knows the email already
    expect(page.locator("#email-static")).to_have_text("shopper@example.com")
    fill_card(page, "4242 4242 4242 4242")
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(re.escape(store) + r"/orders/[^/]+\?session_id=cs_"))
    expect_status_page(page, "paid", 1400, message=paid_message(LARGE))
    assert_books(app, orders_paid=1, balance=1400)


# --- a delayed method: ACH Direct Debit --------------------------------------------------------


def test_us_bank_account_processing_then_paid(page, store, sandbox, app):
    open_pay_page(page, store, MEDIUM)
    panel = fill_bank_account(page, "000123456789")
    expect(panel.locator("[data-mandate]")).to_contain_text("you authorize")
    pay_button(page, MEDIUM).click()
    public_id = expect_status_page(page, "processing", 0, message="is processing")
    expect(page.locator("[data-spinner]")).to_be_visible()
    # the bank answers when the sandbox clock moves on; the page's own polling notices
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": 10})
    expect_status_page(page, "paid", 550, message=paid_message(MEDIUM), timeout=15_000)
    expect(page.locator("[data-spinner]")).to_be_hidden()
    assert_books(app, orders_paid=1, balance=550)
    with app.app_context():
        order = found(db.session.scalar(select(Order).where(Order.public_id == public_id)), public_id)
        steps = [(t.from_status, t.to_status) for t in order.transitions]
        assert ("processing", "paid") in steps
        db.session.remove()


def test_us_bank_account_that_fails_after_processing(page, store, sandbox, app):
    open_pay_page(page, store, SMALL)
    fill_bank_account(page, "000111111116")  # Stripe's test account for "no_account"
    pay_button(page, SMALL).click()
    expect_status_page(page, "processing", 0)
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": 10})
    expect_status_page(page, "failed", 0, timeout=15_000, message="The customer's bank account could not be located.")
    expect(page.get_by_role("link", name="Try another card")).to_be_visible()
    assert_books(app, orders_paid=0, balance=0)
