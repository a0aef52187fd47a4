"""SetupIntents: save a card (or a SEPA mandate) for later without charging it.

create, retrieve (publishable key with ``client_secret``), update, confirm (secret key, or
publishable key + ``client_secret`` as Stripe.js does), cancel, list. Cards that need 3-D Secure
stop in ``requires_action``; success attaches the PaymentMethod to the customer and marks it set
up, so cards that need authentication "unless set up" later charge off-session without it.
"""

from __future__ import annotations

import secrets

from stripe.params import SetupIntentConfirmParams, SetupIntentConfirmParamsPaymentMethodData

from .. import cards, errors
from ..api import Context, apply_metadata, endpoint, list_endpoint, notify
from ..params import browser_confirm_params
from ..primitives import new_id, public
from .intents import check_client_secret, next_action
from .payment_method_data import create_from_data
from .payment_methods import card_of, mark_set_up, resolve

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
SUPPORTED_TYPES = ("card", "sepa_debit")
AUTH_FAILURE_MESSAGE = cards.MESSAGES["setup_intent_authentication_failure"]


#: what Stripe.js sends to confirm with a publishable key (client_secret, raw card details)
BrowserSetupConfirmParams = browser_confirm_params(SetupIntentConfirmParams, SetupIntentConfirmParamsPaymentMethodData)


def _types(payment_method_types, automatic: bool) -> list[str]:
    if payment_method_types:
        for i, pm_type in enumerate(payment_method_types):
            if pm_type not in SUPPORTED_TYPES:
                raise errors.invalid_request(
                    f'The payment method type "{pm_type}" is valid at Stripe but not '
                    "supported by the sandbox (card and sepa_debit are).",
                    param=f"allowed_payment_method_types[{i}]",
                    code="parameter_unsupported",
                )
        return list(dict.fromkeys(payment_method_types))
    return ["card", "sepa_debit"] if automatic else ["card"]


def _check_pm_fits(si: dict, pm: dict, param: str = "payment_method") -> None:
    if pm["type"] not in si["payment_method_types"]:
        raise errors.invalid_request(
            f"The PaymentMethod provided ({pm['type']}) is not allowed for this SetupIntent. "
            "Please attach a PaymentMethod of one of the following types: "
            f"{', '.join(si['payment_method_types'])}.",
            param=param,
            code="setup_intent_unexpected_state",
        )
    owner = pm.get("customer")
    if owner and owner != si.get("customer"):
        raise errors.invalid_request(
            f"The provided PaymentMethod is attached to another Customer ({owner}); a "
            "SetupIntent can only use it for that Customer.",
            param=param,
            code="payment_method_unexpected_state",
        )


def _options(types: list[str]) -> dict:
    if "card" not in types:
        return {}
    return {"card": {"mandate_options": None, "network": None, "request_three_d_secure": "automatic"}}


def _new_setup_intent(
    ctx: Context, *, customer, usage, description, payment_method_types, automatic: bool, owner
) -> dict:
    si_id = new_id("seti")
    types = _types(payment_method_types, automatic)
    return {
        "id": si_id,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": ({"allow_redirects": "always", "enabled": True} if automatic else None),
        "cancellation_reason": None,
        "client_secret": f"{si_id}_secret_{secrets.token_urlsafe(24).replace('-', 'x')}",
        "created": ctx.now(),
        "customer": customer,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": (
            {"id": "pmc_1DefaultConfiguration", "parent": None} if automatic else None
        ),
        "allowed_payment_method_types": list(payment_method_types) if payment_method_types else None,
        "payment_method_options": _options(types),
        "payment_method_types": types,
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": usage,
        "_sandbox": {"owner": owner, "authenticated": False, "return_url": None},
    }


def create_setup(
    ctx: Context,
    *,
    customer=None,
    payment_method=None,
    usage="off_session",
    metadata=None,
    description=None,
    payment_method_types=None,
    automatic_payment_methods=False,
    owner=None,
) -> dict:
    """Store a SetupIntent and emit ``setup_intent.created`` (for other modules too)."""
    if customer:
        ctx.load(customer, "customer", param="customer")
    si = _new_setup_intent(
        ctx,
        customer=customer,
        usage=usage,
        description=description,
        payment_method_types=payment_method_types,
        automatic=bool(automatic_payment_methods) and not payment_method_types,
        owner=owner,
    )
    apply_metadata(si, metadata)
    if payment_method:
        pm = resolve(ctx, payment_method)
        _check_pm_fits(si, pm)
        si.update(payment_method=pm["id"], status="requires_confirmation")
    ctx.store.put(si)
    ctx.emit("setup_intent.created", si)
    return si


def _changed(ctx: Context, si: dict, previous_status: str) -> None:
    ctx.store.put(si)
    if si["status"] != previous_status:
        notify("setup_intent.changed", ctx, si, previous_status=previous_status)


def confirm_setup(
    ctx: Context,
    si: dict,
    *,
    payment_method=None,
    payment_method_data=None,
    return_url=None,
    use_stripe_sdk=None,
    raise_on_decline=True,
) -> dict:
    if si["status"] not in CONFIRMABLE:
        exc = errors.invalid_request(
            f"You cannot confirm this SetupIntent because it has a status of {si['status']}. "
            "Only a SetupIntent with one of the following statuses may be confirmed: "
            f"{', '.join(CONFIRMABLE)}.",
            code="setup_intent_unexpected_state",
        )
        exc.extra["setup_intent"] = public(si)
        raise exc
    if payment_method_data is not None:
        pm = create_from_data(ctx, payment_method_data)
        _check_pm_fits(si, pm, "payment_method_data")
    elif payment_method:
        pm = resolve(ctx, payment_method)
        _check_pm_fits(si, pm)
    elif si.get("payment_method"):
        stored = ctx.store.get(si["payment_method"])
        if stored is None:
            raise errors.no_such("PaymentMethod", si["payment_method"], "payment_method")
        pm = stored
        _check_pm_fits(si, pm)
    else:
        exc = errors.invalid_request(
            "You cannot confirm this SetupIntent because it's missing a payment method. Update "
            "the SetupIntent with a payment method and then confirm it again.",
            param="payment_method",
            code="setup_intent_unexpected_state",
        )
        exc.extra["setup_intent"] = public(si)
        raise exc
    si.update(payment_method=pm["id"], last_setup_error=None, next_action=None)
    si["_sandbox"]["authenticated"] = False
    if return_url is not None:
        si["_sandbox"]["return_url"] = return_url
    if use_stripe_sdk is not None:
        si["_sandbox"]["use_stripe_sdk"] = bool(use_stripe_sdk)
    return _attempt(ctx, si, pm, raise_on_decline=raise_on_decline)


def _attempt(ctx: Context, si: dict, pm: dict, *, raise_on_decline: bool) -> dict:
    previous = si["status"]
    card = card_of(pm)
    if pm["type"] == "card" and not si["_sandbox"]["authenticated"] and cards.setup_needs_authentication(card):
        si["status"] = "requires_action"
        si["next_action"] = next_action(ctx, si)
        ctx.store.put(si)
        ctx.emit("setup_intent.requires_action", si)
        _changed(ctx, si, previous)
        return si
    decision = cards.setup_decision(card) if pm["type"] == "card" else cards.SUCCEED
    if decision.action == "decline":
        message = decision.message
        si["status"] = "requires_payment_method"
        si["last_setup_error"] = {
            "code": decision.error_code,
            "doc_url": "https://stripe.com/docs/error-codes/" + decision.error_code.replace("_", "-"),
            "message": message,
            "payment_method": public(pm),
            "type": "card_error",
        }
        if decision.decline_code:
            si["last_setup_error"]["decline_code"] = decision.decline_code
        si["payment_method"] = None
        ctx.store.put(si)
        ctx.emit("setup_intent.setup_failed", si)
        _changed(ctx, si, previous)
        if raise_on_decline:
            raise errors.card_error(
                message,
                code=decision.error_code,
                decline_code=decision.decline_code,
                setup_intent=public(si),
                payment_method=public(pm),
            )
        return si
    if si.get("customer") and pm.get("customer") != si["customer"]:
        pm["customer"] = si["customer"]
        if pm["type"] == "card" and pm["card"]["checks"]["cvc_check"] == "unchecked":
            pm["card"]["checks"]["cvc_check"] = "pass"
        ctx.store.put(pm)
        ctx.emit("payment_method.attached", pm)
    mark_set_up(ctx, pm)
    si.update(status="succeeded", next_action=None, last_setup_error=None)
    ctx.store.put(si)
    ctx.emit("setup_intent.succeeded", si)
    _changed(ctx, si, previous)
    return si


def complete_setup_authentication(ctx: Context, si: dict, succeeded: bool) -> dict:
    if si["status"] != "requires_action":
        raise errors.invalid_request(
            f"You cannot authenticate this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    pm = ctx.store.require(si["payment_method"])
    si["next_action"] = None
    if succeeded:
        si["_sandbox"]["authenticated"] = True
        return _attempt(ctx, si, pm, raise_on_decline=False)
    previous = si["status"]
    si["status"] = "requires_payment_method"
    si["last_setup_error"] = {
        "code": "setup_intent_authentication_failure",
        "doc_url": "https://stripe.com/docs/error-codes/setup-intent-authentication-failure",
        "message": AUTH_FAILURE_MESSAGE,
        "payment_method": public(pm),
        "type": "invalid_request_error",
    }
    si["payment_method"] = None
    ctx.store.put(si)
    ctx.emit("setup_intent.setup_failed", si)
    _changed(ctx, si, previous)
    return si


# --- endpoints ---------------------------------------------------------------------------------

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
]


def _load(ctx: Context, si_id: str) -> dict:
    return ctx.load(si_id, "setup_intent", label="setup_intent")


@endpoint(
    "POST",
    "/v1/setup_intents",
    params="SetupIntentCreateParams",
    supported=[
        "customer",
        "payment_method",
        "usage",
        "automatic_payment_methods",
        "allowed_payment_method_types",
        "confirm",
        "metadata",
        "description",
        "return_url",
        "use_stripe_sdk",
        "mandate_data",
    ]
    + _PM_DATA,
)
def create_setup_intent(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    automatic_param = params.get("automatic_payment_methods")
    allowed = params.get("allowed_payment_method_types")
    if automatic_param is not None and automatic_param.get("enabled") and allowed:
        raise errors.invalid_request(
            "You may only specify one of these parameters: automatic_payment_methods, allowed_payment_method_types.",
            param="automatic_payment_methods",
        )
    if "return_url" in params and not params.get("confirm"):
        raise errors.invalid_request("You can only pass `return_url` when `confirm=true`.", param="return_url")
    automatic = automatic_param["enabled"] if automatic_param is not None else not allowed
    si = create_setup(
        ctx,
        customer=params.get("customer"),
        payment_method=params.get("payment_method"),
        usage=params.get("usage", "off_session"),
        metadata=params.get("metadata"),
        description=params.get("description"),
        payment_method_types=allowed,
        automatic_payment_methods=automatic,
    )
    if params.get("mandate_data"):
        si["_sandbox"]["mandate_data"] = params["mandate_data"]
    if params.get("confirm"):
        si = confirm_setup(
            ctx,
            si,
            payment_method_data=params.get("payment_method_data"),
            return_url=params.get("return_url"),
            use_stripe_sdk=params.get("use_stripe_sdk"),
        )
    elif params.get("payment_method_data"):
        pm = create_from_data(ctx, params["payment_method_data"])
        _check_pm_fits(si, pm, "payment_method_data")
        si.update(payment_method=pm["id"], status="requires_confirmation")
        ctx.store.put(si)
    return si


@endpoint(
    "GET",
    "/v1/setup_intents/<si_id>",
    params="SetupIntentRetrieveParams",
    publishable=True,
    supported=["client_secret"],
)
def retrieve_setup_intent(ctx: Context, params: dict, si_id: str) -> dict:
    si = _load(ctx, si_id)
    check_client_secret(ctx, si, params.get("client_secret"), "SetupIntent")
    return si


@endpoint(
    "POST",
    "/v1/setup_intents/<si_id>",
    params="SetupIntentUpdateParams",
    supported=["customer", "payment_method", "metadata", "description", "allowed_payment_method_types"],
)
def update_setup_intent(ctx: Context, params: dict, si_id: str) -> dict:
    ctx.require_secret_key()
    si = _load(ctx, si_id)
    if si["status"] in ("succeeded", "canceled") and {
        "customer",
        "payment_method",
        "allowed_payment_method_types",
    } & set(params):
        raise errors.invalid_request(
            f"You cannot update this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    previous = si["status"]
    if "customer" in params:
        if params["customer"]:
            ctx.load(params["customer"], "customer", param="customer")
        si["customer"] = params["customer"] or None
    if "description" in params:
        si["description"] = params["description"] or None
    if "metadata" in params:
        apply_metadata(si, params["metadata"])
    if "allowed_payment_method_types" in params:
        allowed = params["allowed_payment_method_types"] or None
        si["allowed_payment_method_types"] = allowed
        si["payment_method_types"] = _types(allowed, not allowed)
        if allowed:
            si["automatic_payment_methods"] = None
            si["payment_method_configuration_details"] = None
    if "payment_method" in params:
        if params["payment_method"]:
            pm = resolve(ctx, params["payment_method"])
            _check_pm_fits(si, pm)
            si.update(payment_method=pm["id"], status="requires_confirmation")
        else:
            si.update(payment_method=None, status="requires_payment_method")
        si["next_action"] = None
    _changed(ctx, si, previous)
    return si


@endpoint(
    "POST",
    "/v1/setup_intents/<si_id>/confirm",
    params=BrowserSetupConfirmParams,
    publishable=True,
    supported=["payment_method", "return_url", "client_secret", "use_stripe_sdk", "mandate_data"] + _PM_DATA,
)
def confirm_setup_intent(ctx: Context, params: dict, si_id: str) -> dict:
    si = _load(ctx, si_id)
    check_client_secret(ctx, si, params.get("client_secret"), "SetupIntent")
    if params.get("payment_method") and params.get("payment_method_data"):
        raise errors.invalid_request(
            "You may only specify one of these parameters: payment_method, payment_method_data.",
            param="payment_method_data",
        )
    if params.get("mandate_data"):
        si["_sandbox"]["mandate_data"] = params["mandate_data"]
    return confirm_setup(
        ctx,
        si,
        payment_method=params.get("payment_method"),
        payment_method_data=params.get("payment_method_data"),
        return_url=params.get("return_url"),
        use_stripe_sdk=params.get("use_stripe_sdk"),
    )


@endpoint(
    "POST", "/v1/setup_intents/<si_id>/cancel", params="SetupIntentCancelParams", supported=["cancellation_reason"]
)
def cancel_setup_intent(ctx: Context, params: dict, si_id: str) -> dict:
    ctx.require_secret_key()
    si = _load(ctx, si_id)
    if si["status"] not in CONFIRMABLE:
        exc = errors.invalid_request(
            f"You cannot cancel this SetupIntent because it has a status of {si['status']}. "
            "Only a SetupIntent with one of the following statuses may be canceled: "
            f"{', '.join(CONFIRMABLE)}.",
            code="setup_intent_unexpected_state",
        )
        exc.extra["setup_intent"] = public(si)
        raise exc
    previous = si["status"]
    si.update(status="canceled", cancellation_reason=params.get("cancellation_reason"), next_action=None)
    ctx.store.put(si)
    ctx.emit("setup_intent.canceled", si)
    _changed(ctx, si, previous)
    return si


list_setup_intents = list_endpoint(
    "/v1/setup_intents", "setup_intent", params="SetupIntentListParams", filters=("customer", "payment_method")
)
