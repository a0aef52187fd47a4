"""What PaymentIntents and SetupIntents share: the client_secret check of a publishable-key
call and 3-D Secure's ``next_action``."""

from __future__ import annotations

from .. import errors
from ..api import Context
from ..primitives import new_id


def check_client_secret(ctx: Context, intent: dict, given: str | None, kind: str) -> None:
    """A publishable key must present the intent's client_secret (Stripe.js does)."""
    if ctx.key_kind == "secret":
        if given is not None and given != intent["client_secret"]:
            raise errors.invalid_request(
                f"The client_secret provided does not match the client_secret associated with the {kind}.",
                param="client_secret",
            )
        return
    if not given:
        raise errors.invalid_request(
            f"The client_secret parameter is required when using a publishable key to retrieve or confirm this {kind}.",
            param="client_secret",
            code="parameter_missing",
        )
    if given != intent["client_secret"]:
        raise errors.invalid_request(
            f"The client_secret provided does not match the client_secret associated with the {kind}.",
            param="client_secret",
        )


def next_action(ctx: Context, intent: dict) -> dict:
    """3-D Secure's ``next_action`` for a PaymentIntent or SetupIntent: the sandbox's challenge
    page, as a redirect when a return_url was given, else for Stripe.js to open."""
    url = f"{ctx.base_url}/_sandbox/3ds/{intent['id']}"
    return_url = intent["_sandbox"].get("return_url")
    if return_url and not intent["_sandbox"].get("use_stripe_sdk"):
        return {"type": "redirect_to_url", "redirect_to_url": {"return_url": return_url, "url": url}}
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "stripe_js": url,
            "url": url,
            "source": new_id("src"),
            "intent": intent["id"],
        },
    }
