"""Multi-currency prices: a Price's ``currency_options`` (amounts in other currencies than its
own), the Price as a Checkout Session or a subscription created with ``currency=…`` charges it,
and a customer's recurring-billing currency (``customer.currency``, fixed by its first
subscription, as at Stripe).

``currency_options`` is kept in the price's private bookkeeping and shown only when expanded
(``expand[]=currency_options``), as Stripe does; the expanded map lists the price's own currency
too.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import errors
from ..api import Context
from ..expand import includable
from ..money import check_currency
from ..primitives import PRIVATE
from ..store import Store

#: the per-currency fields the sandbox implements (Stripe also takes custom_unit_amount, tiers,
#: tax_behavior and unit_amount_decimal; those are refused as not supported)
_OPTION_FIELDS = ("unit_amount",)


def parse_currency_options(raw: Any, currency: str) -> dict[str, int]:
    """``currency_options[eur][unit_amount]=…`` params -> ``{"eur": 1900}``, checked ('' -> {})."""
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise errors.invalid_request("Invalid object", param="currency_options", code="parameter_invalid")
    options: dict[str, int] = {}
    for key, option in raw.items():
        where = f"currency_options[{key}]"
        code = check_currency_param(key, where)
        if code == currency:
            raise errors.invalid_request(
                f"The currency {code} is the price's own currency; set its amount with unit_amount.",
                param=where,
            )
        if not isinstance(option, dict):
            raise errors.invalid_request("Invalid object", param=where, code="parameter_invalid")
        for field in option:
            if field not in _OPTION_FIELDS:
                raise errors.invalid_request(
                    f"The parameter {where}[{field}] is valid at Stripe but not supported by the sandbox "
                    "(it would be ignored here, so it is refused).",
                    param=f"{where}[{field}]",
                    code="parameter_unsupported",
                )
        if "unit_amount" not in option:
            raise errors.missing_param(f"{where}[unit_amount]")
        options[code] = _non_negative(option["unit_amount"], f"{where}[unit_amount]")
    return options


def _non_negative(value: Any, param: str) -> int:
    """A form value (the SDK sends text inside a map parameter) as a non-negative integer."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise errors.invalid_request(
        f"Invalid non-negative integer: {value}", param=param, code="parameter_invalid_integer"
    )


def check_currency_param(value: Any, param: str) -> str:
    """A supported currency (lowercased), or Stripe's "Invalid currency" error on ``param``."""
    try:
        return check_currency(value)
    except errors.StripeError as exc:
        exc.param = param
        raise


def _option(amount: int) -> dict:
    return {
        "custom_unit_amount": None,
        "tax_behavior": "unspecified",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }


def options_of(price: dict) -> dict[str, int]:
    """Every currency the price can be charged in -> its unit amount (its own currency first)."""
    extra = (price.get(PRIVATE) or {}).get("currency_options") or {}
    return {price["currency"]: price["unit_amount"], **extra}


@includable("price", "currency_options")
def _currency_options(_store: Store, price: dict) -> dict:
    return {code: _option(amount) for code, amount in options_of(price).items()}


def in_currency(price: dict, currency: str | None, param: str) -> dict:
    """The price as charged in ``currency`` (None: its own). Another currency must be one of its
    ``currency_options``; the copy carries that currency and amount (its ``currency_options``
    still lists every currency)."""
    if currency is None or currency == price["currency"]:
        return price
    amounts = options_of(price)
    if currency not in amounts:
        raise errors.invalid_request(
            f"The price `{price['id']}` does not have a `currency_options` entry for `{currency}`. "
            f"Its currencies are: {', '.join(amounts)}.",
            param=param,
        )
    localized = copy.deepcopy(price)
    localized["currency"] = currency
    localized["unit_amount"] = amounts[currency]
    localized["unit_amount_decimal"] = str(amounts[currency])
    return localized


def requested_currency(params: dict) -> str | None:
    """The ``currency`` parameter of a Checkout Session or subscription, checked (None: absent)."""
    if not params.get("currency"):
        return None
    return check_currency_param(params["currency"], "currency")


def lock_customer_currency(ctx: Context, customer: dict, currency: str) -> None:
    """A customer's recurring billing currency: set by its first subscription; another currency
    is refused with Stripe's message."""
    if customer.get("currency") and customer["currency"] != currency:
        raise errors.invalid_request(
            "You cannot combine currencies on a single customer. This customer has had a "
            f"subscription, coupon, or invoice item with currency {customer['currency']}",
            param="currency",
        )
    if customer.get("currency") is None:
        customer["currency"] = currency
        ctx.store.put(customer)
        ctx.emit("customer.updated", customer, {"currency": None})
