"""PaymentIntents: create, retrieve, update, confirm, cancel, list — Stripe's status machine
requires_payment_method → requires_confirmation → requires_action → processing → succeeded /
canceled, driven by the test cards (:func:`cards.charge_decision`) and the bank debits' test
accounts (SEPA IBANs, ACH account numbers), which stay ``processing`` until the sandbox clock
settles them. One attempt (charge, decline, 3-D Secure, settlement) is in
:mod:`.payment_attempts`; which payment methods a PaymentIntent takes, in :mod:`.payment_intent_methods`.

Internal API used by invoices and Checkout Sessions: :func:`create_intent`,
:func:`confirm_intent`, :func:`cancel_intent`. Every status change calls
``notify("payment_intent.changed", ctx, pi, previous_status=…)``.

Private bookkeeping in ``pi["_sandbox"]``: ``owner`` (``in_…``/``cs_…`` that created it),
``off_session``, ``authenticated`` (3-D Secure completed for this attempt), ``return_url``.
"""

from __future__ import annotations

import secrets

from stripe.params import PaymentIntentConfirmParams, PaymentIntentConfirmParamsPaymentMethodData

from .. import errors
from ..api import Context, apply_metadata, endpoint, list_endpoint
from ..money import check_amount, check_currency
from ..params import browser_confirm_params
from ..primitives import new_id
from .intents import check_client_secret
from .payment_attempts import attempt, changed, set_status, unexpected
from .payment_intent_methods import (
    check_pm_fits,
    method_to_confirm,
    payment_method_fields,
    payment_method_options,
    require_mandate,
    types_for,
)
from .payment_method_data import create_from_data
from .payment_methods import resolve

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")


#: what Stripe.js sends to confirm with a publishable key (client_secret, raw card details)
BrowserConfirmParams = browser_confirm_params(PaymentIntentConfirmParams, PaymentIntentConfirmParamsPaymentMethodData)


# --- internal API ------------------------------------------------------------------------------


def _new_intent(ctx: Context, amount: int, currency: str, allowed, automatic: bool, **fields) -> dict:
    """A new PaymentIntent; ``fields``: customer, description, receipt_email,
    setup_future_usage, owner."""
    pi_id = new_id("pi")
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "allowed_payment_method_types": list(allowed) if allowed else None,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": ({"allow_redirects": "always", "enabled": True} if automatic else None),
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{pi_id}_secret_{secrets.token_urlsafe(18).replace('-', 'x')}",
        "confirmation_method": "automatic",
        "created": ctx.now(),
        "currency": currency,
        "customer": fields["customer"],
        "customer_account": None,
        "description": fields["description"],
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        **payment_method_fields(currency, allowed, automatic),
        "processing": None,
        "receipt_email": fields["receipt_email"],
        "review": None,
        "setup_future_usage": fields["setup_future_usage"],
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
        "_sandbox": {"owner": fields["owner"], "off_session": False, "authenticated": False, "return_url": None},
    }


def create_intent(
    ctx: Context,
    *,
    amount,
    currency,
    customer=None,
    payment_method=None,
    metadata=None,
    description=None,
    setup_future_usage=None,
    payment_method_types=None,
    automatic_payment_methods=False,
    owner=None,
    receipt_email=None,
) -> dict:
    """Store a new PaymentIntent and emit ``payment_intent.created``."""
    currency = check_currency(currency)
    check_amount(amount, currency)
    if customer is not None:
        ctx.load(customer, "customer", param="customer")
    automatic = bool(automatic_payment_methods) and not payment_method_types
    pi = _new_intent(
        ctx,
        amount,
        currency,
        payment_method_types,
        automatic,
        customer=customer,
        description=description,
        receipt_email=receipt_email,
        setup_future_usage=setup_future_usage,
        owner=owner,
    )
    apply_metadata(pi, metadata)
    if payment_method:
        pm = resolve(ctx, payment_method)
        check_pm_fits(ctx, pi, pm)
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    ctx.store.put(pi)
    ctx.emit("payment_intent.created", pi)
    return pi


def confirm_intent(
    ctx: Context,
    pi: dict,
    *,
    payment_method=None,
    off_session=False,
    return_url=None,
    raise_on_decline=True,
    payment_method_data=None,
    use_stripe_sdk=None,
    check_mandate=False,
) -> dict:
    """Confirm ``pi``: charge its PaymentMethod and move its status as Stripe does.

    ``check_mandate`` (API confirms): an ACH debit needs the customer's mandate -- either
    ``mandate_data`` on this request (kept in ``pi["_sandbox"]``) or a PaymentMethod already
    set up for later use."""
    if pi["status"] not in CONFIRMABLE:
        raise unexpected(pi, "confirm", CONFIRMABLE)
    pm = method_to_confirm(ctx, pi, payment_method, payment_method_data)
    if check_mandate:
        require_mandate(pi, pm)
    if pm["id"] != pi.get("payment_method") or pi["status"] == "requires_payment_method":
        pi["_sandbox"]["authenticated"] = False
    pi["payment_method"] = pm["id"]
    pi["last_payment_error"] = None
    pi["next_action"] = None
    pi["_sandbox"]["off_session"] = bool(off_session)
    if return_url is not None:
        pi["_sandbox"]["return_url"] = return_url
    if use_stripe_sdk is not None:
        pi["_sandbox"]["use_stripe_sdk"] = bool(use_stripe_sdk)
    return attempt(ctx, pi, pm, raise_on_decline=raise_on_decline)


def cancel_intent(ctx: Context, pi: dict, reason=None) -> dict:
    if pi["status"] not in CANCELABLE:
        raise unexpected(pi, "cancel", CANCELABLE)
    previous = set_status(ctx, pi, "canceled")
    pi.update(canceled_at=ctx.now(), cancellation_reason=reason, next_action=None)
    ctx.store.cancel_jobs("payment_intent.settle", pi["id"])
    ctx.store.put(pi)
    ctx.emit("payment_intent.canceled", pi)
    changed(ctx, pi, previous)
    return pi


# --- endpoints ---------------------------------------------------------------------------------


def _load(ctx: Context, pi_id: str) -> dict:
    return ctx.load(pi_id, "payment_intent", label="payment_intent")


_PM_DATA = [
    "payment_method_data[type]",
    "payment_method_data[card][number]",
    "payment_method_data[card][exp_month]",
    "payment_method_data[card][exp_year]",
    "payment_method_data[card][cvc]",
    "payment_method_data[billing_details]",
    "payment_method_data[sepa_debit][iban]",
    "payment_method_data[metadata]",
    "payment_method_data[allow_redisplay]",
    "payment_method_data[us_bank_account][routing_number]",
    "payment_method_data[us_bank_account][account_number]",
    "payment_method_data[us_bank_account][account_holder_type]",
    "payment_method_data[us_bank_account][account_type]",
]


def _check_create_params(params: dict) -> None:
    for key in ("amount", "currency"):
        if key not in params:
            raise errors.missing_param(key)
    if params.get("capture_method", "automatic") != "automatic":
        raise errors.invalid_request(
            f"capture_method={params['capture_method']} is valid at Stripe but not supported "
            "by the sandbox (only automatic capture is).",
            param="capture_method",
            code="parameter_unsupported",
        )
    for key in ("off_session", "return_url"):
        if key in params and not params.get("confirm", False):
            raise errors.invalid_request(f"You can only pass `{key}` when `confirm=true`.", param=key)
    automatic_param = params.get("automatic_payment_methods")
    if automatic_param is not None and automatic_param.get("enabled") and params.get("allowed_payment_method_types"):
        raise errors.invalid_request(
            "You may only specify one of these parameters: automatic_payment_methods, allowed_payment_method_types.",
            param="automatic_payment_methods",
        )
    if params.get("off_session", False) and params.get("setup_future_usage") == "on_session":
        raise errors.invalid_request(
            "You cannot set `setup_future_usage` to `on_session` when `off_session` is true.",
            param="setup_future_usage",
        )


def _keep_create_extras(ctx: Context, pi: dict, params: dict) -> None:
    """``automatic_payment_methods[allow_redirects]`` and ``mandate_data`` (kept; the sandbox
    creates no Mandate objects)."""
    automatic_param = params.get("automatic_payment_methods")
    if automatic_param is not None and automatic_param.get("allow_redirects") and pi["automatic_payment_methods"]:
        pi["automatic_payment_methods"]["allow_redirects"] = automatic_param["allow_redirects"]
        ctx.store.put(pi)
    if params.get("mandate_data"):
        pi["_sandbox"]["mandate_data"] = params["mandate_data"]
        ctx.store.put(pi)


@endpoint(
    "POST",
    "/v1/payment_intents",
    params="PaymentIntentCreateParams",
    supported=[
        "amount",
        "currency",
        "customer",
        "automatic_payment_methods",
        "allowed_payment_method_types",
        "payment_method",
        "confirm",
        "off_session",
        "setup_future_usage",
        "metadata",
        "description",
        "receipt_email",
        "return_url",
        "capture_method",
        "use_stripe_sdk",
        "mandate_data",
    ]
    + _PM_DATA,
)
def create_payment_intent(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    _check_create_params(params)
    automatic_param = params.get("automatic_payment_methods")
    allowed = params.get("allowed_payment_method_types")
    pi = create_intent(
        ctx,
        amount=params["amount"],
        currency=params["currency"],
        customer=params.get("customer"),
        payment_method=params.get("payment_method"),
        metadata=params.get("metadata"),
        description=params.get("description"),
        setup_future_usage=params.get("setup_future_usage"),
        payment_method_types=allowed,
        automatic_payment_methods=automatic_param["enabled"] if automatic_param is not None else not allowed,
        receipt_email=params.get("receipt_email"),
    )
    _keep_create_extras(ctx, pi, params)
    if params.get("confirm", False):
        pi = confirm_intent(
            ctx,
            pi,
            off_session=bool(params.get("off_session", False)),
            return_url=params.get("return_url"),
            payment_method_data=params.get("payment_method_data"),
            use_stripe_sdk=params.get("use_stripe_sdk"),
            check_mandate=True,
        )
    elif params.get("payment_method_data"):
        pm = create_from_data(ctx, params["payment_method_data"])
        check_pm_fits(ctx, pi, pm, "payment_method_data")
        pi.update(payment_method=pm["id"], status="requires_confirmation")
        ctx.store.put(pi)
    return pi


@endpoint(
    "GET",
    "/v1/payment_intents/<pi_id>",
    params="PaymentIntentRetrieveParams",
    publishable=True,
    supported=["client_secret"],
)
def retrieve_payment_intent(ctx: Context, params: dict, pi_id: str) -> dict:
    pi = _load(ctx, pi_id)
    check_client_secret(ctx, pi, params.get("client_secret"), "PaymentIntent")
    return pi


#: fields that can change only while the PaymentIntent can still be confirmed
_MONEY_FIELDS = {
    "amount",
    "currency",
    "payment_method",
    "allowed_payment_method_types",
    "customer",
    "setup_future_usage",
}


def _update_money(ctx: Context, pi: dict, params: dict) -> None:
    """``currency``, ``amount``, ``customer``, ``allowed_payment_method_types`` (and the
    payment method types and options that follow from them)."""
    if "currency" in params:
        pi["currency"] = check_currency(params["currency"])
    if "amount" in params or "currency" in params:
        check_amount(params.get("amount", pi["amount"]), pi["currency"])
        pi["amount"] = params.get("amount", pi["amount"])
    if "customer" in params:
        if params["customer"]:
            ctx.load(params["customer"], "customer", param="customer")
        pi["customer"] = params["customer"] or None
    if "allowed_payment_method_types" in params:
        allowed = params["allowed_payment_method_types"] or None
        pi["allowed_payment_method_types"] = allowed
        pi["payment_method_types"] = types_for(pi["currency"], allowed, not allowed)
        if allowed:
            pi["automatic_payment_methods"] = None
            pi["payment_method_configuration_details"] = None
        pi["payment_method_options"] = payment_method_options(pi["payment_method_types"])
    elif "currency" in params:
        pi["payment_method_types"] = types_for(
            pi["currency"], pi.get("allowed_payment_method_types"), bool(pi["automatic_payment_methods"])
        )
        pi["payment_method_options"] = payment_method_options(pi["payment_method_types"])


def _update_payment_method(ctx: Context, pi: dict, pm_id: str | None) -> None:
    if pm_id:
        pm = resolve(ctx, pm_id)
        check_pm_fits(ctx, pi, pm)
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    else:
        pi["payment_method"] = None
        pi["status"] = "requires_payment_method"
    pi["next_action"] = None
    pi["_sandbox"]["authenticated"] = False


@endpoint(
    "POST",
    "/v1/payment_intents/<pi_id>",
    params="PaymentIntentUpdateParams",
    supported=[
        "amount",
        "currency",
        "customer",
        "description",
        "metadata",
        "payment_method",
        "allowed_payment_method_types",
        "receipt_email",
        "setup_future_usage",
    ],
)
def update_payment_intent(ctx: Context, params: dict, pi_id: str) -> dict:
    ctx.require_secret_key()
    pi = _load(ctx, pi_id)
    changing_money = _MONEY_FIELDS & set(params)
    if changing_money and pi["status"] not in CONFIRMABLE:
        raise errors.invalid_request(
            f"This PaymentIntent's {sorted(changing_money)[0]} could not be updated because it "
            f"has a status of {pi['status']}. You may only update the "
            f"{sorted(changing_money)[0]} of a PaymentIntent with one of the following "
            "statuses: requires_payment_method, requires_confirmation, requires_action.",
            param=sorted(changing_money)[0],
            code="payment_intent_unexpected_state",
        )
    previous_status = pi["status"]
    _update_money(ctx, pi, params)
    for key in ("description", "receipt_email"):
        if key in params:
            pi[key] = params[key] or None
    if "setup_future_usage" in params:
        pi["setup_future_usage"] = params["setup_future_usage"] or None
    if "metadata" in params:
        apply_metadata(pi, params["metadata"])
    if "payment_method" in params:
        _update_payment_method(ctx, pi, params["payment_method"])
    elif changing_money and pi["status"] == "requires_action":
        pi["status"] = "requires_confirmation" if pi["payment_method"] else "requires_payment_method"
        pi["next_action"] = None
    changed(ctx, pi, previous_status)
    return pi


@endpoint(
    "POST",
    "/v1/payment_intents/<pi_id>/confirm",
    params=BrowserConfirmParams,
    publishable=True,
    supported=[
        "payment_method",
        "off_session",
        "return_url",
        "setup_future_usage",
        "receipt_email",
        "client_secret",
        "use_stripe_sdk",
        "mandate_data",
    ]
    + _PM_DATA,
)
def confirm_payment_intent(ctx: Context, params: dict, pi_id: str) -> dict:
    pi = _load(ctx, pi_id)
    check_client_secret(ctx, pi, params.get("client_secret"), "PaymentIntent")
    if ctx.key_kind == "publishable" and "off_session" in params:
        raise errors.invalid_request("off_session cannot be used with a publishable key.", param="off_session")
    if params.get("payment_method") and params.get("payment_method_data"):
        raise errors.invalid_request(
            "You may only specify one of these parameters: payment_method, payment_method_data.",
            param="payment_method_data",
        )
    if "setup_future_usage" in params:
        pi["setup_future_usage"] = params["setup_future_usage"] or None
    if "receipt_email" in params:
        pi["receipt_email"] = params["receipt_email"] or None
    if "mandate_data" in params:  # kept; the sandbox creates no Mandate objects
        pi["_sandbox"]["mandate_data"] = params["mandate_data"]
    return confirm_intent(
        ctx,
        pi,
        payment_method=params.get("payment_method"),
        off_session=bool(params.get("off_session", False)),
        return_url=params.get("return_url"),
        payment_method_data=params.get("payment_method_data"),
        use_stripe_sdk=params.get("use_stripe_sdk"),
        check_mandate=True,
    )


@endpoint(
    "POST", "/v1/payment_intents/<pi_id>/cancel", params="PaymentIntentCancelParams", supported=["cancellation_reason"]
)
def cancel_payment_intent(ctx: Context, params: dict, pi_id: str) -> dict:
    ctx.require_secret_key()
    return cancel_intent(ctx, _load(ctx, pi_id), params.get("cancellation_reason"))


list_payment_intents = list_endpoint(
    "/v1/payment_intents", "payment_intent", params="PaymentIntentListParams", filters=("customer",)
)
