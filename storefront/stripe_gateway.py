"""The ONLY module that imports ``stripe``.

A :class:`StripeGateway` wraps one ``stripe.StripeClient`` built from the app config
(no global ``stripe.api_key``). Every write carries an idempotency key derived from our
own ids; every Stripe error leaves this module as one of our own exception types whose
``user_message`` is safe to show a buyer (never ``str(stripe_error)``): they live in
``gateway_errors`` (no ``stripe`` needed to catch them) and are re-exported here.

Later issues add PaymentIntents, Checkout Sessions, webhooks... here, and only here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import stripe
from flask import Flask, current_app

from . import log_setup, metrics
from .gateway_errors import (
    DECLINE_MESSAGES,
    GatewayError,
    PaymentDeclined,
    StripeMisconfigured,
    StripeNotFound,
    StripeRequestInvalid,
    StripeUnavailable,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)

__all__ = [
    "DECLINE_MESSAGES",
    "EXTENSION_KEY",
    "GatewayError",
    "PaymentDeclined",
    "StripeGateway",
    "StripeMisconfigured",
    "StripeNotFound",
    "StripeRequestInvalid",
    "StripeUnavailable",
    "WebhookPayloadInvalid",
    "WebhookSignatureInvalid",
    "get_gateway",
    "idempotency_key",
    "init_gateway",
]

log = logging.getLogger(__name__)

EXTENSION_KEY = "stripe_gateway"


# --------------------------------------------------------------------------- errors: Stripe's -> ours
def _translate(err: stripe.StripeError) -> GatewayError:
    kwargs: dict[str, Any] = {
        "stripe_code": getattr(err, "code", None),
        "request_id": getattr(err, "request_id", None),
    }
    detail = getattr(err, "user_message", None) or str(err)
    if isinstance(err, stripe.CardError):
        decline = getattr(err, "error", None)
        decline_code = getattr(decline, "decline_code", None) if decline else None
        code = decline_code or getattr(err, "code", None)
        body = err.json_body if isinstance(err.json_body, dict) else {}
        return PaymentDeclined(
            detail,
            decline_code=decline_code,
            param=getattr(err, "param", None),
            user_message=DECLINE_MESSAGES.get(code or "") or detail,
            payment_intent=(body.get("error") or {}).get("payment_intent"),
            **kwargs,
        )
    if isinstance(err, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)):
        return StripeUnavailable(detail, **kwargs)
    if isinstance(err, (stripe.AuthenticationError, stripe.PermissionError)):
        return StripeMisconfigured(detail, **kwargs)
    if isinstance(err, stripe.InvalidRequestError):
        cls = StripeNotFound if getattr(err, "http_status", None) == 404 else StripeRequestInvalid
        return cls(detail, param=getattr(err, "param", None), **kwargs)
    if isinstance(err, stripe.IdempotencyError):
        return StripeRequestInvalid(detail, **kwargs)
    status = getattr(err, "http_status", None) or 0
    if status >= 500 or status == 429:
        return StripeUnavailable(detail, **kwargs)
    return GatewayError(detail, **kwargs)


def idempotency_key(*parts: Any, payload: Mapping[str, Any] | None = None) -> str:
    """``a-b-c`` from our own ids; with ``payload`` a short digest of the request is appended
    so a changed request never replays an older response under the same key."""
    key = "-".join(str(p) for p in parts)
    if payload is not None:
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        key += "-" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    return key[:255]


# --------------------------------------------------------------------------- gateway
class StripeGateway:
    #: tests only: called as ``before_request(fn, args)`` before every request to Stripe (the
    #: transaction guard in tests/conftest.py checks no database transaction is open); None
    before_request: Callable[[Any, tuple[Any, ...]], None] | None = None

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 2,
        mode: str = "test",
    ):
        self.mode = mode
        self.api_base = api_base
        http_client = stripe.RequestsClient(timeout=timeout)
        kwargs: dict[str, Any] = {
            "max_network_retries": max_network_retries,
            "http_client": http_client,
        }
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self._client = stripe.StripeClient(secret_key, **kwargs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeGateway:
        return cls(
            config["STRIPE_SECRET_KEY"],
            api_base=config.get("STRIPE_API_BASE"),
            timeout=float(config.get("STRIPE_TIMEOUT", 10.0)),
            max_network_retries=int(config.get("STRIPE_MAX_NETWORK_RETRIES", 2)),
            mode=config.get("STRIPE_MODE", "test"),
        )

    # -- plumbing --------------------------------------------------------------------
    @property
    def v1(self) -> stripe.V1Services:
        return self._client.v1

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.before_request is not None:
            self.before_request(fn, args)
        endpoint, started = _endpoint(fn), time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except stripe.StripeError as err:
            metrics.observe_stripe_call(endpoint, time.perf_counter() - started, type(err).__name__)
            log_setup.append("stripe_request_ids", getattr(err, "request_id", None))
            translated = _translate(err)
            log.warning(
                "stripe call failed: %s (%s, request %s)",
                type(err).__name__,
                translated.stripe_code,
                translated.request_id,
            )
            raise translated from err
        metrics.observe_stripe_call(endpoint, time.perf_counter() - started)
        log_setup.append("stripe_request_ids", getattr(getattr(result, "last_response", None), "request_id", None))
        as_dict: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else result
        return as_dict

    def ping(self) -> None:
        """The cheapest authenticated call (readiness): one product, or an error."""
        self._call(self.v1.products.list, {"limit": 1})

    @staticmethod
    def _opts(key: str | None) -> dict[str, Any]:
        return {"idempotency_key": key} if key else {}

    # -- customers -------------------------------------------------------------------
    def create_customer(
        self, *, email: str, name: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        params = {"email": email, "name": name, "metadata": dict(metadata)}
        return self._call(self.v1.customers.create, params, self._opts(idempotency_key))

    def update_customer_email(self, customer_id: str, email: str, *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.customers.update, customer_id, {"email": email}, self._opts(idempotency_key))

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._call(self.v1.customers.retrieve, customer_id)

    def list_customers(self, *, email: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if email:
            params["email"] = email
        return list(self._paginate(self.v1.customers.list, params))

    # -- catalog ---------------------------------------------------------------------
    def list_prices_by_lookup_keys(self, lookup_keys: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(lookup_keys), 10):  # Stripe accepts up to 10 keys per call
            params = {"lookup_keys": lookup_keys[start : start + 10], "limit": 100}
            out.extend(self._paginate(self.v1.prices.list, params))
        return out

    def retrieve_product(self, product_id: str) -> dict[str, Any]:
        return self._call(self.v1.products.retrieve, product_id)

    def create_product(self, params: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.products.create, dict(params), self._opts(idempotency_key))

    def update_product(self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.products.update, product_id, dict(params), self._opts(idempotency_key))

    def create_price(self, params: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.prices.create, dict(params), self._opts(idempotency_key))

    def update_price(self, price_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.prices.update, price_id, dict(params), self._opts(idempotency_key))

    # -- payments ---------------------------------------------------------------------
    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str,
        metadata: Mapping[str, str],
        description: str,
        setup_future_usage: str | None,
        idempotency_key: str,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "customer": customer,
            "metadata": dict(metadata),
            "description": description,
            "automatic_payment_methods": {"enabled": True},
        }
        if setup_future_usage:
            params["setup_future_usage"] = setup_future_usage
        return self._call(self.v1.payment_intents.create, params, self._opts(idempotency_key))

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return self._call(self.v1.payment_intents.retrieve, payment_intent_id)

    def confirm_payment_intent(
        self, payment_intent_id: str, *, payment_method: str, return_url: str, idempotency_key: str
    ) -> dict[str, Any]:
        """Confirm on the server with a saved card. A decline raises :class:`PaymentDeclined`."""
        params = {"payment_method": payment_method, "return_url": return_url}
        return self._call(self.v1.payment_intents.confirm, payment_intent_id, params, self._opts(idempotency_key))

    def create_checkout_session(self, params: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.checkout.sessions.create, dict(params), self._opts(idempotency_key))

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._call(self.v1.checkout.sessions.retrieve, session_id)

    def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.checkout.sessions.expire, session_id, {}, self._opts(idempotency_key))

    # -- refunds and reconciliation (admin) --------------------------------------------
    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        reason: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"payment_intent": payment_intent, "amount": amount}
        if reason:
            params["reason"] = reason
        if metadata:
            params["metadata"] = dict(metadata)
        return self._call(self.v1.refunds.create, params, self._opts(idempotency_key))

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._call(self.v1.charges.retrieve, charge_id)

    def list_refunds(self, *, charge: str | None = None, created_gte: int | None = None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100}
        if charge:
            params["charge"] = charge
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        return self._paginate(self.v1.refunds.list, params)

    def list_payment_intents(self, *, created_gte: int) -> Iterator[dict[str, Any]]:
        return self._paginate(self.v1.payment_intents.list, {"limit": 100, "created": {"gte": created_gte}})

    def list_checkout_sessions(self, *, created_gte: int) -> Iterator[dict[str, Any]]:
        return self._paginate(self.v1.checkout.sessions.list, {"limit": 100, "created": {"gte": created_gte}})

    def list_invoices(self, *, created_gte: int) -> Iterator[dict[str, Any]]:
        return self._paginate(self.v1.invoices.list, {"limit": 100, "created": {"gte": created_gte}})

    def list_disputes(self, *, created_gte: int) -> Iterator[dict[str, Any]]:
        return self._paginate(self.v1.disputes.list, {"limit": 100, "created": {"gte": created_gte}})

    def dashboard_url(self, object_id: str | None) -> str | None:
        """Stripe's dashboard page for an object (test or live); None in sandbox mode, where
        there is no dashboard (and the sandbox's JSON needs the secret key)."""
        if not object_id or self.mode == "sandbox":
            return None
        prefix = "https://dashboard.stripe.com" + ("/test" if self.mode != "live" else "")
        kind = object_id.split("_", 1)[0]
        path = {
            "pi": "payments",
            "ch": "payments",
            "py": "payments",
            "cus": "customers",
            "in": "invoices",
            "sub": "subscriptions",
            "evt": "events",
            "dp": "disputes",
            "du": "disputes",
            "re": "refunds",
            "prod": "products",
            "price": "prices",
            "cs": "checkout/sessions",
        }.get(kind)
        return f"{prefix}/{path}/{object_id}" if path else None

    # -- saved cards -------------------------------------------------------------------
    def list_cards(self, customer_id: str) -> list[dict[str, Any]]:
        return list(
            self._paginate(self.v1.payment_methods.list, {"customer": customer_id, "type": "card", "limit": 100})
        )

    def retrieve_payment_method(self, payment_method_id: str) -> dict[str, Any]:
        return self._call(self.v1.payment_methods.retrieve, payment_method_id)

    def detach_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.payment_methods.detach, payment_method_id, {}, self._opts(idempotency_key))

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, *, idempotency_key: str
    ) -> dict[str, Any]:
        params = {"invoice_settings": {"default_payment_method": payment_method_id}}
        return self._call(self.v1.customers.update, customer_id, params, self._opts(idempotency_key))

    def create_setup_intent(
        self, *, customer: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        params = {
            "customer": customer,
            "usage": "off_session",
            "metadata": dict(metadata),
            "automatic_payment_methods": {"enabled": True},
        }
        return self._call(self.v1.setup_intents.create, params, self._opts(idempotency_key))

    def retrieve_setup_intent(self, setup_intent_id: str) -> dict[str, Any]:
        return self._call(self.v1.setup_intents.retrieve, setup_intent_id)

    # -- subscriptions and invoices (account) ---------------------------------------------
    def create_subscription(
        self, *, customer: str, price: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        """``default_incomplete``: the first invoice waits for the buyer (its
        ``confirmation_secret`` is expanded); the card that pays it becomes the
        subscription's default (``save_default_payment_method=on_subscription``)."""
        params = {
            "customer": customer,
            "items": [{"price": price}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "metadata": dict(metadata),
            "expand": ["latest_invoice.confirmation_secret", "latest_invoice.payments"],
        }
        return self._call(self.v1.subscriptions.create, params, self._opts(idempotency_key))

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._call(self.v1.subscriptions.retrieve, subscription_id)

    def list_subscriptions(self, customer_id: str) -> list[dict[str, Any]]:
        return list(
            self._paginate(self.v1.subscriptions.list, {"customer": customer_id, "status": "all", "limit": 100})
        )

    def update_subscription(
        self, subscription_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return self._call(self.v1.subscriptions.update, subscription_id, dict(params), self._opts(idempotency_key))

    def cancel_subscription(self, subscription_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return self._call(self.v1.subscriptions.cancel, subscription_id, {}, self._opts(idempotency_key))

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        """With ``payments`` expanded: the PaymentIntent that pays it."""
        return self._call(self.v1.invoices.retrieve, invoice_id, {"expand": ["payments"]})

    def list_customer_invoices(self, customer_id: str, *, limit: int = 24) -> list[dict[str, Any]]:
        page = self._call(self.v1.invoices.list, {"customer": customer_id, "limit": limit})
        return list(page.get("data", []))

    def preview_invoice(
        self, *, subscription: str, item_id: str, price: str, proration_behavior: str, proration_date: int | None = None
    ) -> dict[str, Any]:
        details: dict[str, Any] = {"items": [{"id": item_id, "price": price}], "proration_behavior": proration_behavior}
        if proration_date is not None:
            details["proration_date"] = proration_date
        params = {"subscription": subscription, "subscription_details": details}
        return self._call(self.v1.invoices.create_preview, params)

    def preview_upcoming(self, subscription: str) -> dict[str, Any]:
        return self._call(self.v1.invoices.create_preview, {"subscription": subscription})

    def create_billing_portal_session(self, *, customer: str, return_url: str, idempotency_key: str) -> dict[str, Any]:
        return self._call(
            self.v1.billing_portal.sessions.create,
            {"customer": customer, "return_url": return_url},
            self._opts(idempotency_key),
        )

    # -- webhooks ----------------------------------------------------------------------
    @staticmethod
    def verify_webhook(
        payload: bytes, signature: str | None, secret: str | None, tolerance: int = 300
    ) -> dict[str, Any]:
        """Check ``Stripe-Signature`` over the raw body; return the event as a plain dict.

        Verification is Stripe's own (``WebhookSignature.verify_header``), which only refuses
        a timestamp older than ``tolerance``; one further ahead than that is refused here too.
        The body must be UTF-8 (Stripe's only encoding) and is parsed from that text, never
        from bytes (``json.loads`` would guess UTF-16 or UTF-32 from bytes).
        """
        if not secret:
            raise WebhookSignatureInvalid("no webhook signing secret is configured")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as err:
            raise WebhookPayloadInvalid("the webhook body is not UTF-8") from err
        try:
            stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
        except stripe.SignatureVerificationError as err:
            raise WebhookSignatureInvalid(str(err)) from err
        if _signed_at(signature or "") > time.time() + tolerance:
            raise WebhookSignatureInvalid("Timestamp outside the tolerance zone (in the future)")
        try:
            event = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise WebhookPayloadInvalid("the webhook body is not JSON") from err
        if not isinstance(event, dict) or event.get("object") != "event":
            raise WebhookPayloadInvalid("the webhook body is not a Stripe event")
        return event

    def create_webhook_endpoint(self, *, url: str, enabled_events: list[str], idempotency_key: str) -> dict[str, Any]:
        return self._call(
            self.v1.webhook_endpoints.create,
            {"url": url, "enabled_events": enabled_events},
            self._opts(idempotency_key),
        )

    def list_webhook_endpoints(self) -> list[dict[str, Any]]:
        return list(self._paginate(self.v1.webhook_endpoints.list, {"limit": 100}))

    def delete_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return self._call(self.v1.webhook_endpoints.delete, endpoint_id)

    # -- helpers ---------------------------------------------------------------------
    def _paginate(self, list_fn: Callable[..., Any], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        params = dict(params)
        while True:
            page = self._call(list_fn, params)
            data = page.get("data", [])
            yield from data
            if not page.get("has_more") or not data:
                return
            params["starting_after"] = data[-1]["id"]


def _endpoint(fn: Callable[..., Any]) -> str:
    """A bounded metrics label: the SDK method, ``PaymentIntentService.retrieve`` (or
    ``checkout.SessionService.create``: the namespace where the class name repeats)."""
    service = type(getattr(fn, "__self__", None))
    namespace = "".join(part + "." for part in service.__module__.split(".")[1:-1])
    return f"{namespace}{service.__name__}.{getattr(fn, '__name__', '?')}"


def _signed_at(header: str) -> int:
    """The ``t=`` of a Stripe-Signature header that ``verify_header`` accepted, read as the
    SDK reads it."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


def init_gateway(app: Flask) -> StripeGateway:
    gateway = StripeGateway.from_config(app.config)
    app.extensions[EXTENSION_KEY] = gateway
    return gateway


def get_gateway() -> StripeGateway:
    gateway: StripeGateway = current_app.extensions[EXTENSION_KEY]
    return gateway
