"""What every layer of the sandbox shares: the API version, object ids, and the public view of a
stored object. It imports nothing from the package, so anything may import it."""

from __future__ import annotations

import secrets
import string

API_VERSION = "2026-10-28.endive"

_ALPHABET = string.ascii_letters + string.digits

#: id prefix -> object type, for expansion and for looking objects up by id
PREFIXES = {
    "cus": "customer",
    "prod": "product",
    "price": "price",
    "pm": "payment_method",
    "seti": "setup_intent",
    "pi": "payment_intent",
    "ch": "charge",
    "py": "charge",
    "re": "refund",
    "dp": "dispute",
    "cs": "checkout.session",
    "sub": "subscription",
    "si": "subscription_item",
    "in": "invoice",
    "il": "line_item",
    "evt": "event",
    "we": "webhook_endpoint",
    "bps": "billing_portal.session",
    "inpay": "invoice_payment",
    "setatt": "setup_attempt",
    "li": "item",
}

#: the key under which a stored object keeps the sandbox's private bookkeeping
PRIVATE = "_sandbox"


def new_id(prefix: str) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def type_of(object_id: str) -> str | None:
    return PREFIXES.get(object_id.split("_", 1)[0]) if isinstance(object_id, str) else None


def public(node):
    """A copy without the sandbox's private bookkeeping (``_sandbox`` keys), as Stripe shows it."""
    if isinstance(node, dict):
        return {k: public(v) for k, v in node.items() if k != PRIVATE}
    if isinstance(node, list):
        return [public(v) for v in node]
    return node
