"""The outcome of the sandbox's 3-D Secure challenge page, for either kind of intent."""

from __future__ import annotations

from .. import errors
from ..api import Context
from .payment_attempts import complete_payment_authentication
from .setup_intents import complete_setup_authentication


def complete_authentication(ctx: Context, intent_id: str, succeeded: bool) -> dict:
    """The buyer completed (or failed) 3-D Secure for a PaymentIntent or a SetupIntent."""
    obj = ctx.store.get(intent_id) if isinstance(intent_id, str) else None
    if obj is not None and obj.get("object") == "setup_intent":
        return complete_setup_authentication(ctx, obj, succeeded)
    if obj is None or obj.get("object") != "payment_intent":
        raise errors.no_such("payment_intent", intent_id)
    return complete_payment_authentication(ctx, obj, succeeded)
