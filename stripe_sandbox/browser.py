"""Browser-facing pages of the sandbox: the Stripe.js stand-in, the 3-D Secure test page and the
hosted Checkout page.

* ``GET /v3/`` serves ``static/v3/stripe.js``, the stand-in for ``https://js.stripe.com/v3/``.
* ``GET /_sandbox/3ds/<intent_id>``: the "3D Secure 2 Test Page" a card that needs
  authentication opens (inside Stripe.js's overlay, or top-level for a ``redirect_to_url``
  flow). Its buttons POST ``/_sandbox/authenticate/<intent_id>`` (a control route) and then tell
  the parent window, or, top-level, go on to ``/_sandbox/3ds/<intent_id>/return`` which sends
  the buyer to the intent's ``return_url`` with Stripe's query parameters.
* ``GET /c/pay/<session_id>``: the hosted Checkout page for a Checkout Session's ``url``. It
  loads ``/v3/``, mounts the Payment Element in deferred mode, creates the PaymentMethod with
  the publishable key, and POSTs its id to ``/c/pay/<id>/confirm`` (which pays the session
  through ``resources.checkout_completion.complete_session``); 3-D Secure runs through
  ``stripe.handleNextAction``; then it polls ``/c/pay/<id>/status`` until the session is
  complete and goes to ``success_url``.

The hosted invoice and billing portal pages are in :mod:`.billing_pages`. Every page shows the
sandbox's configured business name (``merchant_name``; Stripe.js gets it from the Checkout page).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, abort, jsonify, redirect, render_template, request, send_file

from . import errors
from .money import format_money
from .resources.checkout import customer_details
from .resources.checkout_completion import complete_session
from .resources.price_currencies import options_of
from .runtime import page_context, sandbox_of

browser = Blueprint("sandbox_browser", __name__)

_STATIC = Path(__file__).with_name("static")
STRIPE_JS = _STATIC / "v3" / "stripe.js"

PUBLISHABLE_KEY = "pk_test_sandbox_hosted_checkout"

# --- Stripe.js ---------------------------------------------------------------------------------


@browser.get("/v3/")
@browser.get("/v3")
def stripe_js():
    response = send_file(_STATIC / "v3" / "stripe.js", mimetype="application/javascript", max_age=0)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "no-cache"
    return response


# --- helpers to run sandbox code from a page -----------------------------------------------------


def _check_events(ctx) -> None:
    sandbox = sandbox_of()
    for event in ctx.events:
        sandbox.check_event(event)


def _with_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params] + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redirect_status(status: str) -> str:
    if status in ("succeeded", "requires_capture"):
        return "succeeded"
    if status == "processing":
        return "processing"
    return "failed"


# --- 3-D Secure test page ----------------------------------------------------------------------


def _intent(intent_id: str) -> dict | None:
    obj = sandbox_of().store.get(intent_id)
    if obj is None or obj.get("object") not in ("payment_intent", "setup_intent"):
        return None
    return obj


@browser.get("/_sandbox/3ds/<intent_id>")
def three_d_secure(intent_id: str):
    intent = _intent(intent_id)
    if intent is None:
        abort(404)
    store = sandbox_of().store
    pm = store.get(intent["payment_method"]) if intent.get("payment_method") else None
    card = (pm or {}).get("card") or {}
    is_payment = intent["object"] == "payment_intent"
    return render_template(
        "sandbox/three_d_secure.html",
        intent=intent,
        merchant=sandbox_of().display_name,
        amount=format_money(intent["amount"], intent["currency"]) if is_payment else None,
        brand=(card.get("brand") or "card").title(),
        last4=card.get("last4"),
        pending=intent["status"] == "requires_action",
    )


@browser.get("/_sandbox/3ds/<intent_id>/return")
def three_d_secure_return(intent_id: str):
    """After a top-level challenge: on to the intent's return_url, as Stripe's redirect does."""
    intent = _intent(intent_id)
    if intent is None:
        abort(404)
    return_url = (intent.get("_sandbox") or {}).get("return_url")
    if not return_url:
        return render_template(
            "sandbox/message.html",
            title="Authentication finished",
            message="Authentication is finished. You can close this window.",
        )
    if intent["object"] == "payment_intent":
        params = {"payment_intent": intent["id"], "payment_intent_client_secret": intent["client_secret"]}
    else:
        params = {"setup_intent": intent["id"], "setup_intent_client_secret": intent["client_secret"]}
    params["redirect_status"] = _redirect_status(intent["status"])
    return redirect(_with_query(return_url, params), code=302)


# --- hosted Checkout ---------------------------------------------------------------------------


def _session(session_id: str) -> dict | None:
    obj = sandbox_of().store.get(session_id)
    if obj is None or obj.get("object") != "checkout.session":
        return None
    return obj


def _success_url(session: dict) -> str | None:
    url = session.get("success_url")
    return url.replace("{CHECKOUT_SESSION_ID}", session["id"]) if url else None


def _session_state(session: dict) -> str:
    """``open``, ``expired`` or ``complete`` as the buyer sees it right now."""
    if session["status"] == "open" and session["expires_at"] <= sandbox_of().store.now():
        return "expired"
    return session["status"]


def _payment_intent_of(session: dict) -> dict | None:
    store = sandbox_of().store
    if session.get("payment_intent"):
        return store.get(session["payment_intent"])
    if session.get("invoice"):
        invoice = store.get(session["invoice"]) or {}
        pi_id = (invoice.get("_sandbox") or {}).get("payment_intent")
        return store.get(pi_id) if pi_id else None
    return None


def _line_items(session: dict) -> list[dict]:
    items = []
    for item in (session.get("_sandbox") or {}).get("line_items", []):
        price = item.get("price") or {}
        recurring = price.get("recurring") or None
        interval = None
        if recurring:
            count = recurring.get("interval_count") or 1
            interval = f"every {count} {recurring['interval']}s" if count > 1 else f"per {recurring['interval']}"
        items.append(
            {
                "description": item.get("description") or price.get("nickname") or "Item",
                "quantity": item.get("quantity") or 1,
                # the unit amount charged (a price's currency_options amount in another currency)
                "unit": format_money(options_of(price).get(item["currency"]) if price else None, item.get("currency")),
                "total": format_money(item.get("amount_total"), item.get("currency")),
                "interval": interval,
            }
        )
    return items


def _deferred_amount(session: dict) -> int:
    return max(int(session.get("amount_total") or 0), 0)


@browser.get("/c/pay/<session_id>")
def checkout_page(session_id: str):
    session = _session(session_id)
    if session is None:
        return render_template(
            "sandbox/message.html", title="Something went wrong", message="This Checkout Session does not exist."
        ), 404
    state = _session_state(session)
    # Back from a top-level 3-D Secure redirect (the PaymentIntent's return_url is this page).
    success_url = _success_url(session)
    if state == "complete" and request.args.get("redirect_status") and success_url:
        return redirect(success_url, code=302)
    methods = [t for t in session.get("payment_method_types") or ["card"] if t in ("card", "sepa_debit")] or ["card"]
    config = {
        "sessionId": session["id"],
        "publishableKey": PUBLISHABLE_KEY,
        "mode": "setup" if session["mode"] == "setup" else session["mode"],
        "amount": _deferred_amount(session),
        "currency": session.get("currency") or "usd",
        "paymentMethodTypes": methods,
        "confirmUrl": f"/c/pay/{session['id']}/confirm",
        "statusUrl": f"/c/pay/{session['id']}/status",
        "email": session.get("customer_email") or ((session.get("customer_details") or {}).get("email")),
        "business": sandbox_of().display_name,
    }
    email = config["email"]
    if session.get("customer") and not email:
        customer = sandbox_of().store.get(session["customer"]) or {}
        email = config["email"] = customer.get("email")
    pay_label = {"subscription": "Subscribe", "setup": "Save card"}.get(session["mode"], "Pay")
    return render_template(
        "sandbox/checkout.html",
        session=session,
        state=state,
        merchant=sandbox_of().display_name,
        items=_line_items(session),
        email=email,
        subtotal=format_money(session.get("amount_subtotal"), session.get("currency")),
        total=format_money(session.get("amount_total"), session.get("currency")),
        currency=(session.get("currency") or "").upper(),
        pay_label=pay_label,
        config_json=json.dumps(config).replace("</", "<\\/"),
        success_url=_success_url(session) if state == "complete" else None,
    )


def _status_body(session: dict) -> dict:
    state = _session_state(session)
    pi = _payment_intent_of(session)
    body = {
        "status": state,
        "payment_status": session.get("payment_status"),
        "payment_intent_status": pi["status"] if pi else None,
    }
    if state == "complete":
        body["redirect_url"] = _success_url(session)
    elif pi is not None and pi["status"] == "requires_action":
        body["requires_action"] = True
        body["client_secret"] = pi["client_secret"]
    elif pi is not None and pi["status"] == "requires_payment_method" and pi.get("last_payment_error"):
        body["error"] = {"message": pi["last_payment_error"]["message"], "code": pi["last_payment_error"].get("code")}
    return body


class _Refused(Exception):
    def __init__(self, error):
        super().__init__(error.message)
        self.error = error


@browser.post("/c/pay/<session_id>/confirm")
def checkout_confirm(session_id: str):
    """Pay the session with a PaymentMethod the page created: ``{"payment_method", "email"}``."""
    payload = request.get_json(silent=True) or {}
    pm_id = payload.get("payment_method")
    email = (payload.get("email") or "").strip() or None
    if not isinstance(pm_id, str) or not pm_id.startswith("pm_"):
        return jsonify({"error": {"message": "A payment method is required."}}), 400
    sandbox = sandbox_of()
    store = sandbox.store
    ctx = page_context()
    declined = None
    try:
        with store.transaction():
            session = _session(session_id)
            if session is None:
                return jsonify({"error": {"message": "This Checkout Session does not exist."}}), 404
            state = _session_state(session)
            if state == "expired":
                return jsonify({"status": "expired", "error": {"message": "This Checkout Session has expired."}}), 409
            if state == "complete":
                return jsonify(
                    {
                        "status": "complete",
                        "redirect_url": _success_url(session),
                        "error": {"message": "This Checkout Session is already paid."},
                    }
                ), 409
            if email and not session.get("customer_details") and not session.get("customer"):
                session["customer_details"] = customer_details(email)
                store.put(session)
            try:
                complete_session(ctx, session, pm_id)
            except errors.StripeError as exc:
                if exc.status != 402 and not exc.store_result:
                    raise _Refused(exc) from exc
                declined = exc  # the failed attempt is kept, as at Stripe
            _check_events(ctx)
            body = _status_body(store.require(session_id))
    except _Refused as refused:
        return jsonify({"error": {"message": refused.error.message, "code": refused.error.code}}), refused.error.status
    if declined is not None:
        error = declined.body()["error"]
        body["error"] = {
            "message": error.get("message"),
            "code": error.get("code"),
            "decline_code": error.get("decline_code"),
        }
        return jsonify(body), 402
    return jsonify(body)


@browser.get("/c/pay/<session_id>/status")
def checkout_status(session_id: str):
    session = _session(session_id)
    if session is None:
        return jsonify({"error": {"message": "This Checkout Session does not exist."}}), 404
    return jsonify(_status_body(session))


def stripe_js_style_hash(path: Path = STRIPE_JS) -> str | None:
    """``'sha256-…'`` of the one <style> element this Stripe.js stand-in injects (its ``CSS``
    array of single-quoted lines joined by newlines), for a store whose Content-Security-Policy
    allows it by hash instead of ``'unsafe-inline'``; None if the file is not as expected."""
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        return None
    block = re.search(r"var CSS = \[(.*?)\]\.join\('\\n'\);", source, re.S)
    if block is None:
        return None
    lines = re.findall(r"^\s*'((?:[^'\\]|\\.)*)',?\s*$", block.group(1), re.M)
    if not lines or any("\\" in line for line in lines):
        return None
    digest = hashlib.sha256("\n".join(lines).encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"
