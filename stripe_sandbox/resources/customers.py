"""Customers: create, retrieve, update, delete, list (filter by email)."""

from __future__ import annotations

import secrets

from .. import errors
from ..api import Context, apply_metadata, endpoint, list_endpoint
from ..primitives import new_id
from .payment_methods import attach_to_customer

_FIELDS = [
    "email",
    "name",
    "description",
    "phone",
    "metadata",
    "invoice_settings[default_payment_method]",
    "preferred_locales",
]


def _invoice_prefix() -> str:
    return secrets.token_hex(4).upper()


@endpoint("POST", "/v1/customers", params="CustomerCreateParams", supported=_FIELDS + ["payment_method"])
def create_customer(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    customer = {
        "id": new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": ctx.now(),
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": params.get("description"),
        "discount": None,
        "email": params.get("email"),
        "individual_name": None,
        "business_name": None,
        "invoice_prefix": _invoice_prefix(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": params.get("name"),
        "next_invoice_sequence": 1,
        "phone": params.get("phone"),
        "preferred_locales": params.get("preferred_locales", []),
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    apply_metadata(customer, params.get("metadata"))
    ctx.store.put(customer)
    if params.get("payment_method"):
        attach_to_customer(ctx, params["payment_method"], customer["id"])
    default_pm = (params.get("invoice_settings") or {}).get("default_payment_method")
    if default_pm:
        _set_default_payment_method(ctx, customer, default_pm)
        ctx.store.put(customer)
    ctx.emit("customer.created", customer)
    return customer


def _set_default_payment_method(ctx: Context, customer: dict, pm_id: str) -> None:
    if pm_id == "":
        customer["invoice_settings"]["default_payment_method"] = None
        return
    pm = ctx.load(pm_id, "payment_method", param="invoice_settings[default_payment_method]", label="PaymentMethod")
    if pm.get("customer") != customer["id"]:
        raise errors.invalid_request(
            f"The customer does not have a payment method with the ID {pm_id}. The payment "
            "method must be attached to the customer.",
            param="invoice_settings[default_payment_method]",
            code="resource_missing",
        )
    customer["invoice_settings"]["default_payment_method"] = pm_id


@endpoint("GET", "/v1/customers/<customer_id>", params="CustomerRetrieveParams")
def retrieve_customer(ctx: Context, params: dict, customer_id: str) -> dict:
    ctx.require_secret_key()
    customer = ctx.store.get(customer_id)
    if customer is None or customer.get("object") != "customer":
        raise errors.no_such("customer", customer_id)
    return customer  # a deleted customer is returned as {id, object, deleted: true}


@endpoint("POST", "/v1/customers/<customer_id>", params="CustomerUpdateParams", supported=_FIELDS)
def update_customer(ctx: Context, params: dict, customer_id: str) -> dict:
    ctx.require_secret_key()
    customer = ctx.load(customer_id, "customer")
    previous = {}
    for key in ("email", "name", "description", "phone", "preferred_locales"):
        if key in params:
            previous[key] = customer[key]
            customer[key] = params[key] or None if key != "preferred_locales" else params[key]
    if "metadata" in params:
        previous["metadata"] = dict(customer["metadata"])
        apply_metadata(customer, params["metadata"])
    if "invoice_settings" in params:
        previous["invoice_settings"] = dict(customer["invoice_settings"])
        _set_default_payment_method(ctx, customer, params["invoice_settings"].get("default_payment_method", ""))
    ctx.store.put(customer)
    ctx.emit("customer.updated", customer, previous)
    return customer


@endpoint("DELETE", "/v1/customers/<customer_id>", params="CustomerDeleteParams")
def delete_customer(ctx: Context, params: dict, customer_id: str) -> dict:
    ctx.require_secret_key()
    customer = ctx.load(customer_id, "customer")
    tombstone = {"id": customer_id, "object": "customer", "deleted": True}
    ctx.store.put(tombstone)
    ctx.emit("customer.deleted", customer)
    return tombstone


list_customers = list_endpoint(
    "/v1/customers", "customer", params="CustomerListParams", filters=("email",)
)  # Stripe's email filter is case-sensitive
