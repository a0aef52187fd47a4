"""``/_sandbox/``: control routes for tests and demos (local use only, no authentication).

Reset all state, read and advance the clock, inject API faults (the next N calls answer 500,
hang, or 429, or answer normally after a delay), steer webhook delivery (twice, late, held then
newest-first, dropped), read the delivery log, list the test cards, and read the conformance
counters.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, jsonify, request

from . import errors
from .cards import all_cards
from .expand import expand
from .primitives import public
from .resources.checkout import customer_details
from .resources.checkout_completion import complete_session
from .resources.three_d_secure import complete_authentication
from .runtime import page_context, sandbox_of
from .webhooks import delivery_log, release_held

control = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")

#: ``delay`` answers normally after ``seconds`` (a slow Stripe); ``timeout`` hangs, then 500
_FAULT_MODES = {"error", "timeout", "rate_limit", "delay"}
_MAX_FAULT_SECONDS = 600
_WEBHOOK_FAULTS = {"duplicate", "delay", "hold", "drop"}


def _bad(message: str, status: int = 400):
    return jsonify({"error": {"type": "invalid_request_error", "message": message}}), status


@control.get("/health")
def health():
    return jsonify({"ok": True, "now": sandbox_of().store.now()})


@control.post("/reset")
def reset():
    sandbox_of().store.reset()  # conformance counters cover the server's lifetime: kept
    return jsonify({"reset": True})


@control.get("/clock")
def clock():
    store = sandbox_of().store
    return jsonify({"now": store.now(), "offset": int(store.meta("clock_offset", "0"))})


@control.post("/clock/advance")
def advance_clock():
    """Move sandbox time forward, running every job that falls due on the way, in order."""
    seconds = (request.get_json(silent=True) or {}).get("seconds")
    if not isinstance(seconds, int) or seconds < 0:
        return _bad("seconds must be a non-negative integer")
    sandbox = sandbox_of()
    store = sandbox.store
    target = store.now() + seconds
    ran = sandbox.run_due_jobs(until=target)
    with store.transaction():
        store.set_meta("clock_offset", str(target - int(time.time())))
    ran += sandbox.run_due_jobs()
    return jsonify({"now": store.now(), "jobs_run": ran})


@control.route("/faults", methods=["GET", "POST", "DELETE"])
def faults():
    store = sandbox_of().store
    if request.method == "DELETE":
        store.set_meta_json("faults", [])
    elif request.method == "POST":
        fault = request.get_json(silent=True) or {}
        if fault.get("mode") not in _FAULT_MODES:
            return _bad(f"mode must be one of {sorted(_FAULT_MODES)}")
        count = fault.get("count", 1)
        if not isinstance(count, int) or count < 1:
            return _bad("count must be a positive integer")
        seconds = fault.get("seconds", 30)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= _MAX_FAULT_SECONDS:
            return _bad(f"seconds must be a number from 0 to {_MAX_FAULT_SECONDS}")
        with store.transaction():
            current = store.meta_json("faults", [])
            current.append(
                {
                    "mode": fault["mode"],
                    "count": count,
                    "path_prefix": fault.get("path_prefix") or "/v1/",
                    "seconds": float(seconds),
                }
            )
            store.set_meta_json("faults", current)
    return jsonify({"faults": store.meta_json("faults", [])})


@control.route("/webhooks/faults", methods=["GET", "POST", "DELETE"])
def webhook_faults():
    store = sandbox_of().store
    if request.method == "DELETE":
        store.set_meta_json("webhook_faults", {})
    elif request.method == "POST":
        wanted = request.get_json(silent=True) or {}
        unknown = set(wanted) - _WEBHOOK_FAULTS
        if unknown:
            return _bad(f"unknown webhook faults {sorted(unknown)}; use {sorted(_WEBHOOK_FAULTS)}")
        store.set_meta_json("webhook_faults", wanted)
    return jsonify({"webhook_faults": store.meta_json("webhook_faults", {})})


@control.post("/webhooks/release")
def release():
    newest_first = (request.get_json(silent=True) or {}).get("newest_first", True)
    return jsonify({"released": release_held(sandbox_of().store, bool(newest_first))})


@control.post("/webhooks/flush")
def flush():
    """Wait until every delivery that is due now has been attempted."""
    timeout = float((request.get_json(silent=True) or {}).get("timeout", 10))
    idle = sandbox_of().sender.wait_idle(timeout)
    return jsonify({"idle": idle}), (200 if idle else 504)


@control.get("/deliveries")
def deliveries():
    limit = request.args.get("limit", 200, type=int)
    return jsonify({"deliveries": delivery_log(sandbox_of().store, limit)})


@control.get("/test-cards")
def test_cards():
    return jsonify({"cards": all_cards()})


@control.get("/conformance")
def conformance():
    return jsonify(sandbox_of().conformance)


@control.post("/checkout/<session_id>/pay")
def checkout_pay(session_id):
    """Pay a Checkout Session as its hosted page would: JSON ``{"payment_method": "pm_…",
    "email"?}`` (``email``: what the buyer typed on the page when the session has no customer
    and no ``customer_email``; it becomes the session's ``customer_details.email``).

    Answers the session after the attempt (200), or ``{"error", "session"}`` with Stripe's status
    (402 for a decline, 400 for an expired or complete session, 404 for an unknown one).
    """
    sandbox = sandbox_of()
    store = sandbox.store
    payload = request.get_json(silent=True) or {}
    payment_method, email = payload.get("payment_method"), payload.get("email")
    if not payment_method:
        return _bad("payment_method is required")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        return _bad("email must be an email address")
    ctx = page_context()
    with store.transaction():
        session = store.get(session_id)
        if session is None or session.get("object") != "checkout.session":
            body, status = errors.no_such("checkout.session", session_id).body(), 404
        else:
            if email and not session.get("customer_details") and not session.get("customer"):
                session["customer_details"] = customer_details(email.strip())
                store.put(session)
            try:
                body, status = public(complete_session(ctx, session, payment_method)), 200
            except errors.StripeError as exc:
                if not exc.store_result and exc.status != 402:
                    raise _Rollback(exc) from exc
                body = {**exc.body(), "session": public(store.get(session_id))}
                status = exc.status
        for event in ctx.events:
            sandbox.check_event(event)
    return Response(json.dumps(body), status=status, mimetype="application/json")


class _Rollback(Exception):
    def __init__(self, error):
        super().__init__(error.message)
        self.error = error


@control.errorhandler(_Rollback)
def _rolled_back(exc):
    session_id = request.view_args.get("session_id") if request.view_args else None
    store = sandbox_of().store
    session = store.get(session_id) if session_id else None
    body = {**exc.error.body(), "session": public(session) if session else None}
    return jsonify(body), exc.error.status


@control.post("/authenticate/<intent_id>")
def authenticate(intent_id):
    """Finish 3-D Secure for a PaymentIntent or SetupIntent in ``requires_action``:
    ``{"outcome": "complete"}`` or ``{"outcome": "fail"}`` (what the challenge page's buttons do).
    Answers the intent as the API would, or Stripe's error object."""
    outcome = (request.get_json(silent=True) or {}).get("outcome")
    if outcome not in ("complete", "fail"):
        return _bad('outcome must be "complete" or "fail"')
    sandbox = sandbox_of()
    ctx = page_context()
    try:  # it answers an intent as the API does: checked (and counted as a control answer)
        with sandbox.store.transaction():
            intent = complete_authentication(ctx, intent_id, outcome == "complete")
            body = expand(sandbox.store, intent, [])
            problems = sandbox.check(body)
            for event in ctx.events:
                problems += sandbox.check_event(event)
            if problems and sandbox.strict:
                raise errors.StripeError(500, "api_error", "Sandbox conformance failure: " + "; ".join(problems[:5]))
    except errors.StripeError as exc:
        sandbox.check(exc.body(), is_error=True)
        return jsonify(exc.body()), exc.status
    return jsonify(body)
