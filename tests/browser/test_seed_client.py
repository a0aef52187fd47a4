"""The seed's client, for real: a static front end on ANOTHER origin buys from the live store.

``tests/browser/seed_client/`` is a plain static site (HTML, CSS, JavaScript; no build) served by
a small threaded ``http.server`` on its own port -- a second origin, as a React/Next.js front end
at ``https://shop.example.com`` calling ``https://pay.<shop>/api`` would be. Its script makes
exactly the seed's calls with ``fetch`` (no cookies, no CSRF token): ``GET /api/prices``,
``POST /api/create-checkout-session`` -> ``{url, sessionId}`` -> ``window.location.href = url``,
then on its own success page ``GET /api/check-payment-status/<sessionId>`` until the status is
final. The browser enforces CORS, so the store must answer with the right headers for any of it
to work; the store knows the site only through ``API_CORS_ORIGINS``.

Headless Chromium pays on the sandbox's hosted Checkout page with 4242 4242 4242 4242 as a guest
(Checkout asks for the email) and must come back to the static site's page, which must end on
``paid``; a second buyer leaves Checkout with "Back" and the page must end on ``canceled``; a
third never comes back from Checkout, and the page left polling ``unpaid`` ends on ``expired``
when the session does (the sandbox's clock moved a day on). The seed's call unchanged (``{priceId}``
only, ``?returns=store``) ends on the store's own status page instead.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from storefront.extensions import db
from storefront.models import Order

pytestmark = pytest.mark.usefixtures("webhooks", "catalog")

SITE = Path(__file__).resolve().parent / "seed_client"
GUEST = "guest-buyer@example.com"


class SeedSite:
    """The static front end on its own port. ``/config.js`` says where the API is; everything
    else is a file from ``seed_client/``. Its own CSP lets its pages talk to that API only."""

    def __init__(self, api_base_url: str):
        config = f"window.SEED_CONFIG = {json.dumps({'apiBaseUrl': api_base_url})};\n".encode()
        api_origin = re.match(r"https?://[^/]+", api_base_url).group(0)  # type: ignore[union-attr]
        csp = f"default-src 'self'; connect-src 'self' {api_origin}; form-action 'none'; base-uri 'none'"

        class Handler(SimpleHTTPRequestHandler):
            def end_headers(self):
                self.send_header("Content-Security-Policy", csp)
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def do_GET(self):
                if self.path.split("?")[0] == "/config.js":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/javascript")
                    self.send_header("Content-Length", str(len(config)))
                    self.end_headers()
                    self.wfile.write(config)
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(SITE)))
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture
def seed_site(app, live_server):
    """The static site, allowed by the store (``API_CORS_ORIGINS``); the store's links point at
    the live server (``STORE_URL``). Both settings are put back afterwards."""
    site = SeedSite(live_server.url + "/api")
    saved = {key: app.config.get(key) for key in ("API_CORS_ORIGINS", "STORE_URL")}
    app.config["API_CORS_ORIGINS"] = (site.origin,)
    app.config["STORE_URL"] = live_server.url
    yield site
    app.config.update(saved)
    site.close()


def fill_card(page, number: str) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration date").fill("12 / 34")
    page.get_by_label("Security code").fill("123")
    page.get_by_label("ZIP").fill("94107")


def start_checkout(page, seed_site, sandbox, lookup_key: str, query: str = "") -> str:
    """On the static site: the catalog from the API, "Buy", and off to the hosted Checkout.
    Returns the Checkout Session id. Every answer of 400 or more is kept in
    ``page.failed_responses`` (but the browsers' own favicon requests)."""
    page.failed_responses = []
    page.on(
        "response",
        lambda r: (
            page.failed_responses.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.checkout_bodies = []
    page.on(
        "request",
        lambda r: (
            page.checkout_bodies.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/create-checkout-session")
            else None
        ),
    )
    page.goto(seed_site.origin + "/index.html" + query)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.locator(f"button[data-lookup-key={lookup_key}]").click()
    page.wait_for_url(re.compile(re.escape(sandbox.url) + r"/c/pay/cs_"))
    expect(page.locator("#pay")).to_be_enabled()
    return page.url.rsplit("/", 1)[-1]


def expect_final_status(page, seed_site, session_id: str, status: str, outcome: str) -> None:
    page.wait_for_url(re.compile(re.escape(seed_site.origin) + r"/status\.html\?"))
    query = page.url.split("?", 1)[1]
    assert f"outcome={outcome}" in query and f"session_id={session_id}" in query
    expect(page.locator("#status")).to_have_attribute("data-status", status, timeout=15_000)
    history = page.evaluate("window.statusHistory")
    assert history[-1] == status and set(history) <= {"unpaid", status}, history
    # a CORS refusal shows only in the console (the page's fetch just fails)
    assert not [m for m in page.console_errors if "CORS" in m or "Access-Control" in m], page.console_errors
    assert page.failed_responses == [], page.failed_responses


def order_of(app, session_id: str) -> Order:
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.stripe_checkout_session_id == session_id))
        assert order is not None, f"no order for {session_id}"
        db.session.expunge(order)
        db.session.remove()
        return order


def test_the_seed_client_pays_with_4242_and_sees_paid(page, seed_site, sandbox, app):
    session_id = start_checkout(page, seed_site, sandbox, "points_medium")
    expect(page.locator("#total")).to_have_text("$5.00")
    page.get_by_label("Email").fill(GUEST)  # a guest: Checkout asks for the address
    fill_card(page, "4242 4242 4242 4242")
    page.get_by_role("button", name="Pay").click()
    expect_final_status(page, seed_site, session_id, "paid", "success")
    expect(page.locator("#message")).to_have_text("Payment received. Thank you!")
    assert page.checkout_bodies[0]["successUrl"] == f"{seed_site.origin}/status.html?outcome=success"
    order = order_of(app, session_id)
    assert order.status == "paid" and order.buyer_email == GUEST and order.user_id is None


def test_the_seeds_exact_call_comes_back_to_the_stores_own_page(page, seed_site, sandbox, live_server, app):
    """The seed's client unchanged -- ``{priceId}`` and nothing else: Checkout sends the guest
    back to the store's own status page (on ``STORE_URL``), which ends on paid."""
    session_id = start_checkout(page, seed_site, sandbox, "points_small", query="?returns=store")
    assert page.checkout_bodies == [{"priceId": page.checkout_bodies[0]["priceId"]}]
    page.get_by_label("Email").fill(GUEST)
    fill_card(page, "4242 4242 4242 4242")
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(f"{live_server.url}/checkout/status?session_id={session_id}")
    expect(page.locator("[data-guest-status]")).to_have_attribute("data-status", "paid", timeout=15_000)
    assert order_of(app, session_id).buyer_email == GUEST


def test_the_seed_client_cancels_and_sees_canceled(page, seed_site, sandbox, app):
    session_id = start_checkout(page, seed_site, sandbox, "points_small")
    page.get_by_role("link", name="← Back").click()
    expect_final_status(page, seed_site, session_id, "canceled", "cancel")
    expect(page.locator("#message")).to_have_text("Checkout was canceled. Nothing was charged.")
    assert order_of(app, session_id).status == "canceled"
    # the session is over at Stripe too: its page can't be paid any more
    page.goto(f"{sandbox.url}/c/pay/{session_id}")
    expect(page.get_by_text("This Checkout Session has expired")).to_be_visible()


def test_the_seed_client_waits_while_unpaid_and_sees_expired(page, seed_site, sandbox, app):
    """The buyer leaves Checkout without paying or pressing Back (closes it, goes back in the
    browser's history): the page says unpaid and keeps polling; 24 hours later Stripe expires
    the session and the same page ends on expired."""
    session_id = start_checkout(page, seed_site, sandbox, "points_small")
    page.goto(f"{seed_site.origin}/status.html?outcome=success&session_id={session_id}")
    expect(page.locator("#status")).to_have_attribute("data-status", "unpaid")
    expect(page.locator("#message")).to_have_text("We are waiting for your payment…")
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": 24 * 3600 + 60})
    expect_final_status(page, seed_site, session_id, "expired", "success")
    expect(page.locator("#message")).to_have_text("This checkout expired before it was paid. Nothing was charged.")
    assert order_of(app, session_id).status == "expired"


def test_the_api_docs_page_a_front_end_developer_reads(page, live_server):
    """``/api/docs`` in a browser: every operation, under the store's CSP (the ``page`` fixture
    fails the test on a violation), and the document it is made from one link away."""
    page.goto(live_server.url + "/api/docs")
    expect(page.get_by_role("heading", name=re.compile("Storefront JSON API"))).to_be_visible()
    for operation in ("createCheckoutSession", "checkPaymentStatus", "listPrices"):
        expect(page.locator(f"[data-operation={operation}]")).to_be_visible()
    expect(page.locator("#checkPaymentStatus [data-response='429']")).to_contain_text("Retry-After")
    page.get_by_role("link", name="/api/openapi.json", exact=True).click()
    page.wait_for_url(live_server.url + "/api/openapi.json")
    assert json.loads(page.locator("body").inner_text())["openapi"].startswith("3.1")
