"""Saved cards: listed from Stripe (cached briefly), added with a SetupIntent, set as default,
removed; nobody touches another buyer's card."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from storefront.extensions import db
from storefront.models import User
from storefront.services import cards

from .conftest import browser_confirm_setup, clear_cache, csrf_token_from, found


def customer_id(app, email="buyer@example.com") -> str:
    with app.app_context():
        return db.session.scalar(select(User.stripe_customer_id).where(User.email == email))


def attach(app, sandbox, pm="pm_card_visa", email="buyer@example.com"):
    card = sandbox.stripe.v1.payment_methods.attach(pm, params={"customer": customer_id(app, email)})
    clear_cache(app)  # attached behind the store's back: skip the 30 s cache
    return card


def test_cards_page_lists_brand_last4_expiry_and_default(app, buyer, sandbox):
    visa = attach(app, sandbox)
    mastercard = attach(app, sandbox, "pm_card_mastercard")
    sandbox.stripe.v1.customers.update(
        customer_id(app), params={"invoice_settings": {"default_payment_method": mastercard.id}}
    )
    clear_cache(app)
    page = buyer.get("/account/cards").get_data(as_text=True)
    assert f"Visa ending in {visa.card.last4} · expires {visa.card.exp_month:02d}/{visa.card.exp_year}" in page
    assert f"Mastercard ending in {mastercard.card.last4}" in page
    default_row = found(re.search(r'<li data-card="([^"]+)">(.*?)</li>', page, re.S), "a card row")
    assert default_row.group(1) == mastercard.id and "data-default" in default_row.group(2)
    assert page.count("data-default") == 1


def test_expired_card_is_marked(app, buyer, sandbox):
    # Stripe refuses a past expiry on an update, so the cached list is seeded (it is ours)
    assert cards.Card("pm_x", "visa", "4242", 1, 2020, False).expired
    assert not cards.Card("pm_x", "visa", "4242", 12, 2099, False).expired
    with app.app_context():
        customer = customer_id(app)
        cached = cards.CARD_LISTS.read(customer)
        cards.CARD_LISTS.store(customer, [cards.Card("pm_old", "visa", "0002", 1, 2020, True)], cached)
    page = buyer.get("/account/cards").get_data(as_text=True)
    assert "expires 01/2020" in page and "Expired" in page


def test_the_list_is_cached_briefly(app, buyer, sandbox):
    attach(app, sandbox)
    before = sandbox.control("GET", "/_sandbox/conformance")["responses"]
    for _ in range(3):
        buyer.get("/account/cards")
    assert sandbox.control("GET", "/_sandbox/conformance")["responses"] - before == 2  # once


def test_reloading_the_add_a_card_page_mints_no_new_setup_intent(app, buyer, sandbox):
    """A page view creates nothing more at Stripe: the unconfirmed SetupIntent is handed out again
    (a reload, a HEAD, a second tab); once it is used, the next visit gets a new one."""

    def secret() -> str:
        page = buyer.get("/account/cards/new").get_data(as_text=True)
        return found(re.search(r'data-client-secret="(seti_[^"]+)"', page), "SetupIntent").group(1)

    first = secret()
    assert buyer.head("/account/cards/new").status_code == 200
    assert secret() == first and secret() == first
    assert len(sandbox.stripe.v1.setup_intents.list({"customer": customer_id(app)}).data) == 1
    browser_confirm_setup(sandbox, first, "pm_card_visa")
    assert secret() != first
    assert len(sandbox.stripe.v1.setup_intents.list({"customer": customer_id(app)}).data) == 2


def test_add_a_card_with_a_setup_intent(app, buyer, sandbox):
    page = buyer.get("/account/cards/new").get_data(as_text=True)
    secret = found(re.search(r'data-client-secret="(seti_[^"]+)"', page), "SetupIntent secret").group(1)
    assert f'src="{sandbox.url}/v3/"' in page and "sk_test" not in page
    seti_id = secret.split("_secret_")[0]
    si = sandbox.stripe.v1.setup_intents.retrieve(seti_id)
    assert si.customer == customer_id(app) and si.usage == "off_session"
    browser_confirm_setup(sandbox, secret, "pm_card_visa")
    response = buyer.get(f"/account/cards/added?setup_intent={seti_id}")
    assert response.status_code == 303
    page = buyer.get("/account/cards").get_data(as_text=True)
    assert "was saved" in page and "Visa ending in 4242" in page
    assert "data-default" in page  # the first card becomes the default
    customer = sandbox.stripe.v1.customers.retrieve(customer_id(app))
    assert customer.invoice_settings.default_payment_method is not None


def test_set_default_and_remove(app, buyer, sandbox):
    visa = attach(app, sandbox)
    mastercard = attach(app, sandbox, "pm_card_mastercard")
    assert buyer.post(f"/account/cards/{mastercard.id}/default").status_code == 303
    customer = sandbox.stripe.v1.customers.retrieve(customer_id(app))
    assert customer.invoice_settings.default_payment_method == mastercard.id
    assert buyer.post(f"/account/cards/{visa.id}/remove").status_code == 303
    remaining = sandbox.stripe.v1.payment_methods.list(params={"customer": customer_id(app), "type": "card"}).data
    assert [pm.id for pm in remaining] == [mastercard.id]
    page = buyer.get("/account/cards").get_data(as_text=True)
    assert visa.id not in page and mastercard.id in page


@pytest.mark.parametrize("action", ["default", "remove"])
def test_a_buyer_cannot_touch_another_buyers_card(app, client, auth, catalog, sandbox, action):
    auth.signup(email="victim@example.com")
    victim_card = attach(app, sandbox, email="victim@example.com")
    auth.logout()
    auth.signup(email="thief@example.com")
    response = client.post(f"/account/cards/{victim_card.id}/{action}")
    assert response.status_code == 404
    pm = sandbox.stripe.v1.payment_methods.retrieve(victim_card.id)
    assert pm.customer == customer_id(app, "victim@example.com")
    assert (
        sandbox.stripe.v1.customers.retrieve(
            customer_id(app, "thief@example.com")
        ).invoice_settings.default_payment_method
        is None
    )
    assert client.post("/account/cards/pm_does_not_exist/remove").status_code == 404


def test_cannot_finish_another_buyers_setup_intent(app, client, auth, catalog, sandbox):
    auth.signup(email="victim@example.com")
    page = client.get("/account/cards/new").get_data(as_text=True)
    seti_id = (
        found(re.search(r'data-client-secret="(seti_[^"_]+_[^"_]+)', page), "SetupIntent secret")
        .group(1)
        .split("_secret")[0]
    )
    auth.logout()
    auth.signup(email="thief@example.com")
    assert client.get(f"/account/cards/added?setup_intent={seti_id}").status_code == 404


def test_card_actions_need_csrf(app, sandbox, database_url, sandbox_server, catalog):
    from storefront import create_app
    from tests.conftest import TEST_PASSWORD, make_config

    store = create_app(make_config(database_url, sandbox_server.url, WTF_CSRF_ENABLED=True))
    client = store.test_client()
    signup = client.get("/signup").get_data(as_text=True)
    client.post(
        "/signup",
        data={
            "email": "buyer@example.com",
            "name": "Bea",
            "password": TEST_PASSWORD,
            "confirm": TEST_PASSWORD,
            "csrf_token": csrf_token_from(signup),
        },
    )
    card = attach(app, sandbox)
    assert client.post(f"/account/cards/{card.id}/remove").status_code == 400
    assert client.post("/account/subscribe/starter_monthly").status_code == 400
    assert sandbox.stripe.v1.payment_methods.retrieve(card.id).customer is not None
    token = csrf_token_from(client.get("/account/cards").get_data(as_text=True))
    assert client.post(f"/account/cards/{card.id}/remove", data={"csrf_token": token}).status_code == 303
    assert sandbox.stripe.v1.payment_methods.retrieve(card.id).customer is None


def test_stripe_down_shows_a_plain_message(app, buyer, sandbox):
    sandbox.fault("error", count=5, path_prefix="/v1/customers")
    clear_cache(app)
    page = buyer.get("/account/cards")
    assert page.status_code == 200
    assert "not responding" in page.get_data(as_text=True)
