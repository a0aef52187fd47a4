"""Headless Chromium against the real store and the sandbox: a newcomer signs up.

Uses the browser fixtures of tests/browser/conftest.py (`page`, skipped without Chromium) and
the store fixtures of tests/conftest.py (`app`, `sandbox`)."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from storefront import create_app
from tests.conftest import found, make_config


@pytest.fixture
def live_store(app, database_url, sandbox_server, sandbox):
    # Same database as `app` (cleaned after the test), CSRF on as in production.
    store = create_app(make_config(database_url, sandbox_server.url, WTF_CSRF_ENABLED=True))
    with store.app_context():
        from storefront.services.catalog import sync_catalog

        sync_catalog()
    server = make_server("127.0.0.1", 0, store, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_newcomer_signs_up_and_sandbox_holds_the_customer(live_store, page, sandbox, app):
    from sqlalchemy import select

    from storefront.extensions import db
    from storefront.models import User

    page.goto(live_store + "/")
    assert page.locator("article.card").count() == 7
    assert "Test mode" in page.locator(".test-banner").inner_text()
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Email").fill("Newcomer@Example.com")
    page.get_by_label("Name").fill("Nina Newcomer")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Confirm password").fill("short")
    page.get_by_role("button", name="Create account").click()
    assert "at least 10 characters" in page.locator(".error").first.inner_text()

    page.get_by_label("Password", exact=True).fill("a-good-long-passphrase")
    page.get_by_label("Confirm password").fill("a-good-long-passphrase")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(live_store + "/")
    assert "Welcome, Nina Newcomer" in page.locator(".flashes").inner_text()
    assert "Nina Newcomer" in page.locator(".site-header").inner_text()

    with app.app_context():
        user = found(db.session.scalar(select(User).where(User.email == "newcomer@example.com")), "newcomer")
        customers = sandbox.customers(email="newcomer@example.com")
        assert len(customers) == 1 and customers[0].id == user.stripe_customer_id
        assert customers[0].metadata["user_id"] == str(user.id)

    # the buy button opens the product page; confirming there (a CSRF-protected POST) opens
    # the pay page; then log out (also a POST with CSRF)
    page.locator("form[action='/buy/points_small'] button").click()
    assert "How would you like to pay?" in page.content()
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url("**/orders/ord_*/pay")
    assert "Pay for Small Points Pack" in page.locator("h1").inner_text()
    page.get_by_role("button", name="Log out").click()
    assert "You have been logged out" in page.locator(".flashes").inner_text()


def test_test_cards_page_lists_sandbox_cards(live_store, page):
    page.goto(live_store + "/")
    page.get_by_role("link", name="See the test cards").click()
    assert "4242424242424242" in page.locator("table").inner_text()
