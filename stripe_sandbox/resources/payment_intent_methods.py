"""Which payment methods a PaymentIntent takes: its ``payment_method_types`` (from
``allowed_payment_method_types`` or the automatic set for its currency), their
``payment_method_options``, whether a PaymentMethod fits it, and the PaymentMethod a confirm
uses (with the ACH mandate it needs)."""

from __future__ import annotations

from typing import Any

from .. import errors
from ..api import Context
from ..primitives import public
from .payment_method_data import create_from_data
from .payment_methods import is_set_up, resolve

SUPPORTED_TYPES = ("card", "sepa_debit", "us_bank_account")
#: the one currency a type is limited to (Stripe: SEPA is EUR-only, ACH USD-only)
TYPE_CURRENCY = {"sepa_debit": "eur", "us_bank_account": "usd"}


def types_for(currency: str, allowed, automatic: bool) -> list[str]:
    """``payment_method_types`` of the answer: the compatible ones among ``allowed`` (the
    ``allowed_payment_method_types`` parameter of this API version), or the automatic set."""
    if allowed:
        for i, pm_type in enumerate(allowed):
            if pm_type not in SUPPORTED_TYPES:
                raise errors.invalid_request(
                    f'The payment method type "{pm_type}" is valid at Stripe but not '
                    "supported by the sandbox (card, sepa_debit and us_bank_account are).",
                    param=f"allowed_payment_method_types[{i}]",
                    code="parameter_unsupported",
                )
        compatible = [t for t in dict.fromkeys(allowed) if TYPE_CURRENCY.get(t, currency) == currency]
        if not compatible:
            only = "; ".join(f"{t} only supports: {TYPE_CURRENCY[t]}" for t in allowed if t in TYPE_CURRENCY)
            raise errors.invalid_request(
                f"The currency provided ({currency}) is invalid for every payment method type "
                f"in allowed_payment_method_types; {only}.",
                param="currency",
                code="parameter_invalid",
            )
        return compatible
    if automatic:  # as for an account in the US with these methods turned on
        return ["card"] + [t for t, c in TYPE_CURRENCY.items() if c == currency]
    return ["card"]


def payment_method_options(types: list[str]) -> dict[str, dict[str, Any]]:
    """``payment_method_options`` for the PaymentIntent's ``payment_method_types``."""
    options: dict[str, dict[str, Any]] = {}
    if "card" in types:
        options["card"] = {
            "installments": None,
            "mandate_options": None,
            "network": None,
            "request_three_d_secure": "automatic",
        }
    if "sepa_debit" in types:
        options["sepa_debit"] = {}
    if "us_bank_account" in types:
        options["us_bank_account"] = {
            "financial_connections": {"permissions": ["payment_method"], "prefetch": []},
            "mandate_options": {},
            "verification_method": "automatic",
        }
    return options


def payment_method_fields(currency: str, allowed, automatic: bool) -> dict:
    """A new PaymentIntent's ``payment_method*`` fields."""
    types = types_for(currency, allowed, automatic)
    return {
        "payment_method": None,
        "payment_method_configuration_details": (
            {"id": "pmc_1DefaultConfiguration", "parent": None} if automatic else None
        ),
        "payment_method_options": payment_method_options(types),
        "payment_method_types": types,
    }


def check_pm_fits(ctx: Context, pi: dict, pm: dict, param: str = "payment_method") -> None:
    if pm["type"] not in pi["payment_method_types"]:
        raise errors.invalid_request(
            f"The PaymentMethod provided ({pm['type']}) is not allowed for this PaymentIntent. "
            "Please attach a PaymentMethod of one of the following types: "
            f"{', '.join(pi['payment_method_types'])}. Alternatively update the allowed "
            "payment_method_types for this PaymentIntent to include "
            f'"{pm["type"]}".',
            param=param,
            code="payment_intent_incompatible_payment_method",
        )
    owner = pm.get("customer")
    if owner and owner != pi.get("customer"):
        if pi.get("customer"):
            raise errors.invalid_request(
                f"The provided PaymentMethod belongs to a different Customer ({owner}) than the "
                f"one on this PaymentIntent ({pi['customer']}).",
                param=param,
                code="payment_method_unexpected_state",
            )
        raise errors.invalid_request(
            "The provided PaymentMethod is attached to a Customer. To use it, provide that "
            f"Customer's ID ({owner}) in the `customer` parameter of the PaymentIntent.",
            param=param,
            code="payment_method_unexpected_state",
        )
    if not owner and (pm.get("_sandbox") or {}).get("used_once"):
        raise errors.invalid_request(
            "The provided PaymentMethod was previously used with a PaymentIntent without "
            "Customer attachment, shared with a connected account without Customer attachment,"
            " or was detached from a Customer. It may not be used again. To use a "
            "PaymentMethod multiple times, you must attach it to a Customer first.",
            param=param,
            code="payment_method_unexpected_state",
        )


def method_to_confirm(ctx: Context, pi: dict, payment_method, payment_method_data) -> dict:
    """The PaymentMethod a confirm charges: new from ``payment_method_data``, the given one, or
    the one already on ``pi``; checked against ``pi``."""
    if payment_method_data is not None:
        pm = create_from_data(ctx, payment_method_data)
        check_pm_fits(ctx, pi, pm, "payment_method_data")
        return pm
    if payment_method:
        pm = resolve(ctx, payment_method)
        check_pm_fits(ctx, pi, pm)
        return pm
    if pi.get("payment_method"):
        stored = ctx.store.get(pi["payment_method"])
        if stored is None:
            raise errors.no_such("PaymentMethod", pi["payment_method"], "payment_method")
        check_pm_fits(ctx, pi, stored)
        return stored
    exc = errors.invalid_request(
        "You cannot confirm this PaymentIntent because it's missing a payment method. To "
        "confirm the PaymentIntent, provide a payment_method, or update the PaymentIntent "
        "with a payment method and confirm it again.",
        param="payment_method",
        code="payment_intent_unexpected_state",
    )
    exc.extra["payment_intent"] = public(pi)
    raise exc


def require_mandate(pi: dict, pm: dict) -> None:
    """An ACH debit needs the customer's mandate: ``mandate_data`` on the request (kept in
    ``pi["_sandbox"]``) or a PaymentMethod already set up for later use."""
    if pm["type"] == "us_bank_account" and not is_set_up(pm) and not pi["_sandbox"].get("mandate_data"):
        raise errors.invalid_request(
            "A mandate is required to debit a us_bank_account PaymentMethod: pass mandate_data"
            "[customer_acceptance] when confirming (Stripe.js does this for you).",
            param="mandate_data",
            code="parameter_missing",
        )
