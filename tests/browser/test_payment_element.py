"""The Payment Element and confirmPayment / confirmSetup in a real browser, against the sandbox.

Every page here comes from the test shop (conftest.TestShop) and uses only Stripe.js's public API.
"""

from __future__ import annotations

import datetime
import re

from playwright.sync_api import expect

DECLINED = "Your card was declined."
AUTH_FAILED = (
    "We are unable to authenticate your payment method. Please choose a different payment method and try again."
)


def open_pay_page(page, shop, query: str = ""):
    api_calls = []
    page.on("request", lambda r: api_calls.append(r.url) if "/v1/" in r.url else None)
    page.goto(f"{shop.url}/pay?{query}")
    page.wait_for_selector("body[data-ready=true]")
    return api_calls


def fill_card(page, number: str, expiry: str = "12 / 34", cvc: str = "123", zip_code="12345"):
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill(expiry)
    page.get_by_label("Security code").fill(cvc)
    if zip_code is not None:
        page.get_by_label("ZIP").fill(zip_code)


def challenge_frame(page):
    dialog = page.get_by_role("dialog", name="Authenticate your payment")
    expect(dialog).to_be_visible()
    frame = page.frame_locator("[data-sandbox-3ds] iframe")
    expect(frame.get_by_role("heading", name="3D Secure 2 Test Page")).to_be_visible()
    return dialog, frame


def test_successful_card_redirects_to_return_url(page, shop, stripe_client):
    open_pay_page(page, shop)
    fill_card(page, "4242 4242 4242 4242")
    expect(page.locator("[data-field=number] .sbx-brand")).to_have_text("Visa")
    events = page.evaluate("window.changeEvents")
    assert events[-1] == {
        "elementType": "payment",
        "empty": False,
        "complete": True,
        "collapsed": False,
        "value": {"type": "card"},
    }
    page.click("#submit")
    page.wait_for_url(re.compile(r"/return\?"))
    query = dict(re.findall(r"[?&]([^=]+)=([^&]*)", page.url))
    assert query["redirect_status"] == "succeeded"
    intent = shop.intents[-1]
    assert query["payment_intent"] == intent.id
    assert query["payment_intent_client_secret"] == intent.client_secret
    expect(page.locator("#status")).to_have_text("succeeded")
    pi = stripe_client.v1.payment_intents.retrieve(intent.id)
    assert pi.status == "succeeded"
    pm = stripe_client.v1.payment_methods.retrieve(pi.payment_method)
    assert pm.card.last4 == "4242" and pm.billing_details.address.postal_code == "12345"
    assert not page.console_errors


def test_declined_card_shows_message_and_buyer_can_retry(page, shop, stripe_client):
    open_pay_page(page, shop)
    fill_card(page, "4000 0000 0000 0002")
    page.click("#submit")
    expect(page.locator("#message")).to_have_text(DECLINED)
    error = page.evaluate("window.lastResult.error")
    assert error["type"] == "card_error" and error["code"] == "card_declined"
    assert error["decline_code"] == "generic_decline"
    assert error["payment_intent"]["status"] == "requires_payment_method"
    # the same page, another card
    page.get_by_label("Card number").fill("4242424242424242")
    page.click("#submit")
    page.wait_for_url(re.compile(r"redirect_status=succeeded"))
    assert stripe_client.v1.payment_intents.retrieve(shop.intents[-1].id).status == "succeeded"


def test_three_d_secure_complete(page, shop, stripe_client):
    open_pay_page(page, shop)
    fill_card(page, "4000 0025 0000 3155")
    page.click("#submit")
    _dialog, frame = challenge_frame(page)
    expect(frame.get_by_text("$19.99")).to_be_visible()
    frame.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(re.compile(r"redirect_status=succeeded"))
    assert stripe_client.v1.payment_intents.retrieve(shop.intents[-1].id).status == "succeeded"


def test_three_d_secure_fail(page, shop, stripe_client):
    open_pay_page(page, shop, "redirect=if_required")
    fill_card(page, "4000002500003155")
    page.click("#submit")
    dialog, frame = challenge_frame(page)
    frame.get_by_role("button", name="Fail authentication").click()
    expect(page.locator("#message")).to_have_text(AUTH_FAILED)
    expect(dialog).to_have_count(0)
    error = page.evaluate("window.lastResult.error")
    assert error["code"] == "payment_intent_authentication_failure"
    assert error["payment_intent"]["status"] == "requires_payment_method"
    pi = stripe_client.v1.payment_intents.retrieve(shop.intents[-1].id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "payment_intent_authentication_failure"


def test_validation_errors_without_calling_the_api(page, shop):
    api_calls = open_pay_page(page, shop)
    calls_after_load = len(api_calls)
    number = page.get_by_label("Card number")
    number.fill("4242 4242 4242 4241")  # full length, fails Luhn
    expect(page.get_by_text("Your card number is invalid.")).to_be_visible()
    expect(number).to_have_attribute("aria-invalid", "true")
    last_year = datetime.date.today().year - 1
    page.get_by_label("Expiration date").fill(f"01 / {last_year % 100:02d}")
    expect(page.get_by_text("Your card's expiration year is in the past.")).to_be_visible()
    page.click("#submit")
    expect(page.locator("#message")).to_have_text("Your card number is invalid.")
    error = page.evaluate("window.lastResult.error")
    assert error == {"type": "validation_error", "code": "invalid_number", "message": "Your card number is invalid."}
    # incomplete fields
    number.fill("4242 4242")
    page.get_by_label("Expiration date").fill("12 / 34")
    page.click("#submit")
    assert page.evaluate("window.lastResult.error.code") == "incomplete_number"
    element = page.locator("#payment-element")
    expect(element.get_by_text("Your card number is incomplete.")).to_be_visible()
    expect(element.get_by_text("Your card's security code is incomplete.")).to_be_visible()
    expect(number).to_be_focused()
    assert len(api_calls) == calls_after_load, "validation must not call the API"


def test_keyboard_and_labels(page, shop):
    open_pay_page(page, shop)
    for label in ("Card number", "Expiration date", "Security code", "Country", "ZIP"):
        expect(page.get_by_label(label)).to_be_visible()
    page.get_by_label("Card number").focus()
    page.keyboard.type("378282246310005")  # American Express, 15 digits: moves on to expiry
    expect(page.get_by_label("Card number")).to_have_value("3782 822463 10005")
    expect(page.locator("[data-field=number] .sbx-brand")).to_have_text("American Express")
    expect(page.get_by_label("Expiration date")).to_be_focused()
    page.keyboard.type("1234")
    expect(page.get_by_label("Expiration date")).to_have_value("12 / 34")
    expect(page.get_by_label("Security code")).to_be_focused()
    page.keyboard.type("12345")
    expect(page.get_by_label("Security code")).to_have_value("1234")  # Amex: 4 digits
    page.keyboard.press("Tab")
    expect(page.get_by_label("Country")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("94107")
    page.keyboard.press("Tab")
    expect(page.locator("#submit")).to_be_focused()
    assert page.evaluate("window.changeEvents.at(-1).complete") is True


def test_sepa_debit_processing_then_succeeds(page, shop, stripe_client, stripe_sandbox):
    open_pay_page(page, shop, "currency=eur&types=sepa_debit,card&amount=2500")
    page.get_by_role("tab", name="SEPA Direct Debit").click()
    assert page.evaluate("window.changeEvents.at(-1).value.type") == "sepa_debit"
    page.get_by_label("Full name").fill("Jenny Rosen")
    page.get_by_label("Email").fill("jenny@example.com")
    page.get_by_label("IBAN").fill("AT611904300234573201")
    expect(page.get_by_label("IBAN")).to_have_value("AT61 1904 3002 3457 3201")
    page.click("#submit")
    page.wait_for_url(re.compile(r"redirect_status=processing"))
    expect(page.locator("#status")).to_have_text("processing")
    intent = shop.intents[-1]
    assert stripe_client.v1.payment_intents.retrieve(intent.id).status == "processing"
    stripe_sandbox.advance_clock(10)
    page.click("#refresh")
    expect(page.locator("#status")).to_have_text("succeeded")
    assert stripe_client.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_sepa_debit_failing_iban(page, shop, stripe_client, stripe_sandbox):
    open_pay_page(page, shop, "currency=eur&types=sepa_debit&amount=2500&redirect=if_required")
    # only one method: no tabs, the SEPA form directly
    expect(page.get_by_role("tab")).to_have_count(0)
    page.get_by_label("Full name").fill("Jenny Rosen")
    page.get_by_label("Email").fill("jenny@example.com")
    page.get_by_label("IBAN").fill("AT861904300235473202")
    page.click("#submit")
    expect(page.locator("#result")).to_have_text("processing")
    stripe_sandbox.advance_clock(10)
    status = page.evaluate("""async () => {
        const r = await stripe.retrievePaymentIntent(config.clientSecret);
        return [r.paymentIntent.status, r.paymentIntent.last_payment_error.code];
    }""")
    assert status == ["requires_payment_method", "insufficient_funds"]


def test_confirm_setup_with_three_d_secure(page, shop, stripe_client):
    page.goto(f"{shop.url}/save")
    page.wait_for_selector("body[data-ready=true]")
    fill_card(page, "4000 0027 6000 3184")
    page.click("#submit")
    _, frame = challenge_frame(page)
    expect(frame.get_by_text("Save card for future payments")).to_be_visible()
    frame.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(re.compile(r"/return\?"))
    query = dict(re.findall(r"[?&]([^=]+)=([^&]*)", page.url))
    assert query["redirect_status"] == "succeeded"
    assert query["setup_intent"] == shop.intents[-1].id
    expect(page.locator("#status")).to_have_text("succeeded")
    si = stripe_client.v1.setup_intents.retrieve(shop.intents[-1].id)
    assert si.status == "succeeded" and si.payment_method


def test_integration_errors_are_thrown(page, shop):
    open_pay_page(page, shop)
    messages = page.evaluate("""() => {
        const out = [];
        const attempt = (fn) => { try { fn(); out.push(null); } catch (e) { out.push([e.name, e.message]); } };
        attempt(() => Stripe(''));
        attempt(() => Stripe('sk_test_123'));
        attempt(() => stripe.confirmPayment({}));
        attempt(() => stripe.confirmPayment({elements}));
        attempt(() => elements.create('payment'));
        attempt(() => stripe.elements({mode: 'payment', currency: 'usd'}));
        attempt(() => stripe.elements().create('linkAuthentication').mount('#nope'));
        return out;
    }""")
    assert all(m and m[0] == "IntegrationError" for m in messages), messages
    assert "publishable key" in messages[0][1]
    assert "secret key" in messages[1][1]
    assert "return_url" in messages[3][1]
    assert "one Element of type payment" in messages[4][1]


def test_every_test_card_number_is_complete_with_its_brand(page, shop):
    """Each documented test card number is accepted by the Payment Element as Stripe.js does."""
    import json
    from pathlib import Path

    import stripe_sandbox as sandbox_package

    cards = json.loads((Path(sandbox_package.__file__).parent / "data" / "test-cards.json").read_text())
    numbers = [c for c in cards if c["number"] and c["outcome"] != "declined_invalid_number"]
    open_pay_page(page, shop)
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("ZIP").fill("12345")
    labels = {
        "visa": "Visa",
        "mastercard": "Mastercard",
        "amex": "American Express",
        "discover": "Discover",
        "diners": "Diners Club",
        "jcb": "JCB",
        "unionpay": "UnionPay",
    }
    for card in numbers:
        page.get_by_label("Card number").fill(card["number"])
        page.get_by_label("Security code").fill("1234" if card["brand"] == "amex" else "123")
        state = page.evaluate("""() => [window.changeEvents.at(-1).complete,
            document.querySelector('[data-field=number] .sbx-brand').textContent,
            document.querySelector('[data-field=number] input').getAttribute('aria-invalid')]""")
        assert state == [True, labels[card["brand"]], "false"], (card["number"], state)


def test_redirect_to_url_challenge_opened_top_level(page, shop, stripe_client):
    """A server-side confirm with a return_url gets ``redirect_to_url``: the challenge page,
    opened top-level, sends the buyer back to return_url with Stripe's query parameters."""
    intent = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1200,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
            "return_url": f"{shop.url}/return",
            "allowed_payment_method_types": ["card"],
        }
    )
    assert intent.status == "requires_action"
    assert intent.next_action.type == "redirect_to_url"
    page.goto(intent.next_action.redirect_to_url.url)
    expect(page.get_by_role("heading", name="3D Secure 2 Test Page")).to_be_visible()
    expect(page.get_by_text("$12.00")).to_be_visible()
    page.get_by_role("button", name="Complete authentication").click()
    page.wait_for_url(re.compile(r"/return\?"))
    query = dict(re.findall(r"[?&]([^=]+)=([^&]*)", page.url))
    assert query["payment_intent"] == intent.id
    assert query["redirect_status"] == "succeeded"
    expect(page.locator("#status")).to_have_text("succeeded")


def test_closing_the_challenge_fails_authentication(page, shop, stripe_client):
    open_pay_page(page, shop, "redirect=if_required")
    fill_card(page, "4000 0027 6000 3184")
    page.click("#submit")
    dialog, _frame = challenge_frame(page)
    expect(dialog).to_have_attribute("aria-modal", "true")
    close = page.get_by_role("button", name="Cancel authentication")
    page.keyboard.press("Tab")  # focus stays inside the dialog
    assert page.evaluate("document.activeElement.closest('[role=dialog]') !== null")
    close.click()
    expect(page.locator("#message")).to_have_text(AUTH_FAILED)
    expect(dialog).to_have_count(0)
    assert stripe_client.v1.payment_intents.retrieve(shop.intents[-1].id).status == "requires_payment_method"
