"""The sandbox's WSGI app: Stripe's REST API in front of :class:`~.store.Store`.

One view wraps every endpoint: inject a configured fault, authenticate the key, decode and
validate the parameters, replay an idempotent result, run the handler in one transaction, expand
and conformance-check what it returns, and answer with Stripe's JSON (or Stripe's error object).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from flask import Flask, Response, g, request

from . import (
    errors,
    resources,  # noqa: F401 - importing the package registers every API endpoint
)
from .api import ENDPOINTS, Context, Endpoint
from .billing_pages import billing_pages
from .browser import browser
from .control import control
from .expand import expand
from .params import decode, validate
from .runtime import Sandbox, base_url, sandbox_of
from .store import Store
from .webhooks import Sender

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, Stripe-Version",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
}


def create_sandbox_app(
    state_path=None,
    *,
    strict: bool = False,
    webhook_timeout: float = 10.0,
    webhook_retry_base: float = 2.0,
    webhook_max_attempts: int = 8,
    tick: float = 0.25,
    public_url: str | None = None,
    merchant_name: str | None = None,
    start_threads: bool = True,
) -> Flask:
    """Build the sandbox app. ``strict`` answers 500 for any object that fails conformance;
    ``merchant_name`` is the business name its pages show (default: ``SANDBOX_MERCHANT_NAME``
    from the environment, else :data:`~.runtime.DEFAULT_MERCHANT_NAME`)."""
    app = Flask(__name__, template_folder="templates", static_folder="static", static_url_path="/_sandbox/static")
    app.config["SANDBOX_PUBLIC_URL"] = public_url
    store = Store(state_path)
    sandbox = Sandbox(
        store,
        strict=strict,
        tick=tick,
        merchant_name=merchant_name or os.environ.get("SANDBOX_MERCHANT_NAME") or None,
        sender=Sender(store, timeout=webhook_timeout, retry_base=webhook_retry_base, max_attempts=webhook_max_attempts),
    )
    app.extensions["sandbox"] = sandbox
    for ep in ENDPOINTS:
        app.add_url_rule(
            ep.rule,
            endpoint=f"{ep.method} {ep.rule}",
            view_func=_view(ep),
            methods=[ep.method],
            provide_automatic_options=False,
        )  # CORS preflight: _unrecognized
    app.register_blueprint(control)
    app.register_blueprint(browser)
    app.register_blueprint(billing_pages)
    app.after_request(_cors_and_count)
    app.register_error_handler(404, _unrecognized)
    app.register_error_handler(405, _unrecognized)
    if start_threads:
        sandbox.start()
    return app


# --- the API view ----------------------------------------------------------------------------


def _view(ep: Endpoint):
    def view(**path_args):
        sandbox = sandbox_of()
        try:
            fault = _take_fault(sandbox.store, request.path)
            if fault is not None:
                return fault
            key_kind = _authenticate(ep)
            raw = decode(list(request.args.items(multi=True)) + list(request.form.items(multi=True)))
            if key_kind == "publishable":
                raw.pop("key", None)  # Stripe.js may authenticate with a ``key`` parameter
            idem_key = request.headers.get("Idempotency-Key") if ep.method == "POST" else None
            ctx = sandbox.context(base_url(), key_kind=key_kind, idempotency_key=idem_key)
            return _run(sandbox, ep, ctx, raw, path_args)
        except errors.StripeError as exc:
            return _error_response(sandbox, exc)

    view.__name__ = f"{ep.handler.__module__}.{ep.handler.__name__}"
    return view


def _run(sandbox: Sandbox, ep: Endpoint, ctx: Context, raw: dict, path_args: dict) -> Response:
    store = sandbox.store
    fingerprint = hashlib.sha256(json.dumps([ep.method, request.path, raw], sort_keys=True).encode()).hexdigest()
    with store.transaction():
        if ctx.idempotency_key:
            saved = store.idempotent_result(ctx.idempotency_key)
            if saved is not None:
                if saved[0] != fingerprint:
                    raise errors.StripeError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{ctx.idempotency_key}' if you meant to execute a different request.",
                    )
                sandbox.check(json.loads(saved[2]), is_error=saved[1] != 200)
                return _json(saved[2], saved[1], {"Idempotent-Replayed": "true"})
        params = validate(raw, ep.params, ep.supported)
        try:
            result = ep.handler(ctx, params, **path_args)
            status = 200
            body = expand(store, result, params.get("expand", []))
            problems = sandbox.check(body)
        except errors.StripeError as exc:
            if not exc.store_result:
                raise
            status, body = exc.status, exc.body()
            problems = sandbox.check(body, is_error=True)
        for event in ctx.events:
            problems += sandbox.check_event(event)
        if problems and sandbox.strict:
            raise errors.StripeError(500, "api_error", "Sandbox conformance failure: " + "; ".join(problems[:5]))
        text = json.dumps(body, indent=2)
        if ctx.idempotency_key:
            store.save_idempotent_result(ctx.idempotency_key, fingerprint, status, text)
    return _json(text, status, {"Request-Id": ctx.request_id})


def _authenticate(ep: Endpoint) -> str:
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[len("Bearer ") :].strip()
    elif request.authorization and request.authorization.type == "basic":
        key = request.authorization.username or ""
    if not key and ep.publishable:
        key = request.values.get("key", "")  # Stripe.js may send the key as a parameter
    if not key:
        raise errors.unauthorized(
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'"
            "). See https://stripe.com/docs/api#authentication for details, or we can help at "
            "https://support.stripe.com/."
        )
    if key.startswith("sk_test_") and len(key) > len("sk_test_"):
        return "secret"
    if key.startswith("pk_test_") and len(key) > len("pk_test_"):
        if not ep.publishable:
            raise errors.unauthorized(
                "This API call cannot be made with a publishable API key. "
                "Please use a secret API key. You can find a list of your "
                "API keys at https://dashboard.stripe.com/account/apikeys."
            )
        return "publishable"
    shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
    raise errors.unauthorized(f"Invalid API Key provided: {shown}")


def _fault_response(error: errors.StripeError, headers: dict) -> Response:
    body = error.body()
    sandbox_of().check(body, is_error=True)
    return _json(json.dumps(body), error.status, headers)


def _take_fault(store: Store, path: str) -> Response | None:
    """Consume one configured fault matching ``path``, if any (outside the store lock)."""
    with store.transaction():
        faults = store.meta_json("faults", [])
        for fault in faults:
            if fault["count"] > 0 and path.startswith(fault.get("path_prefix") or "/v1/"):
                fault["count"] -= 1
                store.set_meta_json("faults", [f for f in faults if f["count"] > 0])
                break
        else:
            return None
    mode = fault["mode"]
    if mode == "delay":  # a slow Stripe: the call then runs as usual
        time.sleep(float(fault.get("seconds", 30)))
        return None
    if mode == "timeout":
        time.sleep(float(fault.get("seconds", 30)))
        return _fault_response(
            errors.StripeError(500, "api_error", "The sandbox hung this request on purpose (fault injection)."), {}
        )
    if mode == "rate_limit":
        return _fault_response(
            errors.StripeError(
                429,
                "invalid_request_error",
                "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                code="rate_limit",
            ),
            {"Stripe-Should-Retry": "true"},
        )
    return _fault_response(
        errors.StripeError(500, "api_error", "An unexpected error occurred (sandbox fault injection)."),
        {"Stripe-Should-Retry": "true"},
    )


def _error_response(sandbox: Sandbox, exc: errors.StripeError) -> Response:
    body = exc.body()
    sandbox.check(body, is_error=True)
    headers = dict(exc.headers)
    if exc.type == "idempotency_error":
        headers["Stripe-Should-Retry"] = "false"
    return _json(json.dumps(body, indent=2), exc.status, headers)


def _json(text: str, status: int, headers: dict) -> Response:
    response = Response(text, status=status, mimetype="application/json")
    response.headers["Stripe-Version"] = "2026-10-28.endive"
    for key, value in headers.items():
        response.headers[key] = value
    return response


def _cors_and_count(response: Response) -> Response:
    if request.path.startswith("/v1/"):
        response.headers.update(_CORS)
        if request.method == "OPTIONS":
            return response
        sandbox = sandbox_of()
        with sandbox._counter_lock:
            sandbox.conformance["responses"] += 1
            if not g.get("sandbox_answer_checked"):
                sandbox.conformance["unchecked"].append(f"{request.method} {request.path} {response.status_code}")
    return response


def _unrecognized(exc):
    if request.method == "OPTIONS" and request.path.startswith("/v1/"):
        return Response(status=204, headers=_CORS)
    if not request.path.startswith("/v1/"):
        return exc
    body = errors.invalid_request(
        f"Unrecognized request URL ({request.method}: {request.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        status=404,
    ).body()
    sandbox_of().check(body, is_error=True)
    return _json(json.dumps(body), 404, {})
