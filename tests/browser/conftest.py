"""Browser-test fixtures: Debian's Chromium driven by Playwright, a sandbox, and a tiny shop.

The shop (:class:`TestShop`) is a small HTTP server owned by the tests. Its pages are written only
against Stripe.js's public API; the one thing that differs from a page using Stripe for real is
the script URL (``{sandbox}/v3/`` instead of ``https://js.stripe.com/v3/``). Intents are created
server-side with the official SDK, as a real shop would.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe
from stripe.params import PaymentIntentCreateParams

from stripe_sandbox.testing import SandboxServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PUBLISHABLE_KEY = "pk_test_browser_tests"
SECRET_KEY = "sk_test_browser_tests"

logging.getLogger("werkzeug").setLevel(logging.ERROR)


def pytest_collection_modifyitems(config, items):
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


# --- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()
    # The store's Content-Security-Policy must fit every page the tests walk through.
    violations = [m for m in page.console_errors if "Content Security Policy" in m]
    assert not violations, f"CSP violations: {violations}"


# --- sandbox -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stripe_sandbox_server(tmp_path_factory):
    server = SandboxServer(tmp_path_factory.mktemp("browser-sandbox") / "state.sqlite3").start()
    yield server
    server.stop()


@pytest.fixture
def stripe_sandbox(stripe_sandbox_server):
    stripe_sandbox_server.reset()
    return stripe_sandbox_server


@pytest.fixture
def stripe_client(stripe_sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0)


# --- the test shop -------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Test shop</title>
<script src="{stripe_js}"></script>
<style>body{{font-family:system-ui,sans-serif;max-width:520px;margin:40px auto;padding:0 16px}}
button{{margin-top:16px;padding:10px 16px;font-size:16px}}</style>
</head>
<body>
<h1>{title}</h1>
<form id="payment-form">
  <div id="payment-element"></div>
  <button id="submit" type="submit">{button}</button>
  <div id="message" role="alert"></div>
  <div id="result"></div>
</form>
<script>
  const config = {config};
  const stripe = Stripe(config.publishableKey);
  const elements = stripe.elements({{clientSecret: config.clientSecret,
                                     appearance: {{theme: 'stripe', variables: {{colorPrimary: '#0a7d55'}}}}}});
  const paymentElement = elements.create('payment', {{layout: 'tabs'}});
  window.changeEvents = [];
  paymentElement.on('change', (event) => window.changeEvents.push(event));
  paymentElement.on('ready', () => document.body.setAttribute('data-ready', 'true'));
  paymentElement.mount('#payment-element');

  document.getElementById('payment-form').addEventListener('submit', async (event) => {{
    event.preventDefault();
    const options = {{elements, confirmParams: {{return_url: config.returnUrl}}, redirect: config.redirect}};
    const {{error, paymentIntent, setupIntent}} = config.kind === 'setup'
      ? await stripe.confirmSetup(options)
      : await stripe.confirmPayment(options);
    window.lastResult = {{error, paymentIntent, setupIntent}};
    if (error) {{
      document.getElementById('message').textContent = error.message;
    }} else {{
      const intent = paymentIntent || setupIntent;
      document.getElementById('result').textContent = intent.status;
    }}
  }});
</script>
</body>
</html>
"""

_RETURN = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Order status</title>
<script src="{stripe_js}"></script></head>
<body>
<h1>Thank you</h1>
<p>Redirect status: <strong id="redirect-status">{redirect_status}</strong></p>
<p>Payment status: <strong id="status">…</strong></p>
<button id="refresh" type="button">Refresh</button>
<script>
  const stripe = Stripe({key});
  const params = new URLSearchParams(window.location.search);
  async function refresh() {{
    const secret = params.get('payment_intent_client_secret');
    const result = secret ? await stripe.retrievePaymentIntent(secret)
                          : await stripe.retrieveSetupIntent(params.get('setup_intent_client_secret'));
    const intent = result.paymentIntent || result.setupIntent;
    document.getElementById('status').textContent = intent ? intent.status : result.error.message;
  }}
  document.getElementById('refresh').addEventListener('click', refresh);
  refresh();
</script>
</body>
</html>
"""


class TestShop:
    """A shop with a payment page (``/pay``), a card-saving page (``/save``) and a return page.

    ``/pay?amount=1999&currency=usd&types=card&redirect=always`` creates a PaymentIntent with
    the official SDK and renders a page that mounts the Payment Element with its client secret.
    """

    __test__ = False

    def __init__(self, sandbox_url: str):
        self.sandbox_url = sandbox_url
        self.client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox_url}, max_network_retries=0)
        self.intents: list = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                try:
                    if parts.path == "/pay":
                        body = shop.payment_page(query)
                    elif parts.path == "/save":
                        body = shop.setup_page(query)
                    elif parts.path == "/return":
                        body = _RETURN.format(
                            stripe_js=f"{shop.sandbox_url}/v3/",
                            key=json.dumps(PUBLISHABLE_KEY),
                            redirect_status=html.escape(query.get("redirect_status", "")),
                        )
                    elif parts.path == "/favicon.ico":
                        self.send_response(204)
                        self.end_headers()
                        return
                    elif parts.path in ("/success", "/cancel"):
                        body = (
                            f"<!doctype html><title>{parts.path[1:]}</title>"
                            f"<h1 id='landed'>{parts.path[1:]}</h1>"
                            f"<p id='session'>{html.escape(query.get('session_id', ''))}</p>"
                        )
                    else:
                        self.send_error(404)
                        return
                except stripe.StripeError as exc:
                    self.send_error(500, str(exc))
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _render(self, title: str, button: str, config: dict) -> str:
        return _PAGE.format(stripe_js=f"{self.sandbox_url}/v3/", title=title, button=button, config=json.dumps(config))

    def payment_page(self, query: dict) -> str:
        params: PaymentIntentCreateParams = {
            "amount": int(query.get("amount", 1999)),
            "currency": query.get("currency", "usd"),
        }
        if query.get("types"):
            params["allowed_payment_method_types"] = query["types"].split(",")
        else:
            params["automatic_payment_methods"] = {"enabled": True}
        intent = self.client.v1.payment_intents.create(params=params)
        self.intents.append(intent)
        return self._render(
            "Buy a thing",
            "Pay",
            {
                "publishableKey": PUBLISHABLE_KEY,
                "clientSecret": intent.client_secret,
                "kind": "payment",
                "returnUrl": f"{self.url}/return",
                "redirect": query.get("redirect", "always"),
            },
        )

    def setup_page(self, query: dict) -> str:
        customer = self.client.v1.customers.create(params={"email": "saver@example.com"})
        intent = self.client.v1.setup_intents.create(
            params={"customer": customer.id, "allowed_payment_method_types": ["card"]}
        )
        self.intents.append(intent)
        return self._render(
            "Save a card",
            "Save card",
            {
                "publishableKey": PUBLISHABLE_KEY,
                "clientSecret": intent.client_secret,
                "kind": "setup",
                "returnUrl": f"{self.url}/return",
                "redirect": query.get("redirect", "always"),
            },
        )

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="session")
def _shop(stripe_sandbox_server):
    shop = TestShop(stripe_sandbox_server.url)
    yield shop
    shop.close()


@pytest.fixture
def shop(_shop, stripe_sandbox):
    _shop.intents.clear()
    return _shop
