"""Our errors for Stripe's: what ``stripe_gateway`` raises when a call to Stripe fails.

Each carries a ``user_message`` safe to show a buyer (never ``str(stripe_error)``), an HTTP status and a
machine ``code``. Kept apart from the gateway (which translates ``stripe``'s exceptions into these) so that
importing them needs no ``stripe``; ``storefront.stripe_gateway`` re-exports them.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class: something went wrong talking to Stripe."""

    user_message = "Something went wrong with our payment provider. Please try again."
    http_status = 502
    code = "payment_provider_error"

    def __init__(
        self,
        detail: str = "",
        *,
        stripe_code: str | None = None,
        decline_code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        user_message: str | None = None,
        payment_intent: dict[str, Any] | None = None,
    ):
        super().__init__(detail or self.user_message)
        #: for a declined confirm: the PaymentIntent as Stripe left it (no second fetch needed)
        self.payment_intent = payment_intent
        self.detail = detail
        self.stripe_code = stripe_code
        self.decline_code = decline_code
        self.param = param
        self.request_id = request_id
        if user_message:
            self.user_message = user_message


class StripeUnavailable(GatewayError):
    """Network trouble, timeouts, 5xx and rate limits: worth retrying later."""

    user_message = "Our payment provider is not responding right now. Please try again in a minute."
    http_status = 503
    code = "payment_provider_unavailable"


class PaymentDeclined(GatewayError):
    """The card was declined (or needs another payment method)."""

    user_message = "Your card was declined. Please try another card."
    http_status = 402
    code = "card_declined"


class StripeRequestInvalid(GatewayError):
    """Stripe refused the request itself: a bug on our side or stale data."""

    http_status = 400
    code = "invalid_request"


class StripeNotFound(StripeRequestInvalid):
    user_message = "We could not find that payment record."
    http_status = 404
    code = "not_found"


class WebhookSignatureInvalid(GatewayError):
    """A webhook whose Stripe-Signature is missing, wrong or too old."""

    user_message = "Invalid webhook signature."
    http_status = 400
    code = "invalid_signature"


class WebhookPayloadInvalid(GatewayError):
    """A webhook body that is not a UTF-8 JSON Stripe event (refused whatever its signature)."""

    user_message = "The webhook body is not a Stripe event."
    http_status = 400
    code = "invalid_payload"


class StripeMisconfigured(GatewayError):
    """Bad or missing API keys: the operator's problem, not the buyer's."""

    user_message = "Payments are temporarily unavailable. We're on it."
    http_status = 503
    code = "payment_provider_misconfigured"


DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined. Please try another card.",
    "card_declined": "Your card was declined. Please try another card.",
    "fraudulent": "Your card was declined. Please try another card.",
    "authentication_required": "Your bank needs you to confirm this payment. Please try again "
    "and complete the authentication.",
    "insufficient_funds": "Your card has insufficient funds. Please try another card.",
    "lost_card": "Your card was declined. Please try another card.",
    "stolen_card": "Your card was declined. Please try another card.",
    "expired_card": "Your card has expired. Please try another card.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Please try again.",
    "incorrect_number": "Your card number is incorrect.",
}
