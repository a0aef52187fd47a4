"""Products and prices. Prices are immutable but for ``active``, ``lookup_key``, metadata."""

from __future__ import annotations

from .. import errors
from ..api import Context, apply_metadata, endpoint, list_endpoint, retrieve_endpoint
from ..primitives import PRIVATE, new_id
from .price_currencies import check_currency_param, parse_currency_options

_PRODUCT_FIELDS = ["name", "description", "active", "metadata", "default_price"]


def new_product(params: dict, now: int) -> dict:
    """A Product from ``products.create`` params, or from a price's ``product_data``."""
    product = {
        "id": params.get("id") or new_id("prod"),
        "object": "product",
        "active": params.get("active", True),
        "created": now,
        "default_price": None,
        "description": params.get("description"),
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": params["name"],
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": now,
        "url": None,
    }
    apply_metadata(product, params.get("metadata"))
    return product


@endpoint(
    "POST", "/v1/products", params="ProductCreateParams", supported=["id", "name", "description", "active", "metadata"]
)
def create_product(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if params.get("id") and ctx.store.get(params["id"]):
        raise errors.invalid_request("Product already exists.", param="id", code="resource_already_exists")
    product = ctx.store.put(new_product(params, ctx.now()))
    ctx.emit("product.created", product)
    return product


retrieve_product = retrieve_endpoint("/v1/products/<product_id>", "product", params="ProductRetrieveParams")


@endpoint("POST", "/v1/products/<product_id>", params="ProductUpdateParams", supported=_PRODUCT_FIELDS)
def update_product(ctx: Context, params: dict, product_id: str) -> dict:
    ctx.require_secret_key()
    product = ctx.load(product_id, "product")
    previous = {}
    for key in ("name", "description", "active"):
        if key in params:
            previous[key] = product[key]
            product[key] = params[key] if params[key] != "" else None
    if "default_price" in params:
        price = ctx.load(params["default_price"], "price", param="default_price")
        if price["product"] != product_id:
            raise errors.invalid_request("The price must belong to this product.", param="default_price")
        previous["default_price"] = product["default_price"]
        product["default_price"] = price["id"]
    if "metadata" in params:
        previous["metadata"] = dict(product["metadata"])
        apply_metadata(product, params["metadata"])
    product["updated"] = ctx.now()
    ctx.store.put(product)
    ctx.emit("product.updated", product, previous)
    return product


@endpoint("DELETE", "/v1/products/<product_id>", params="ProductDeleteParams")
def delete_product(ctx: Context, params: dict, product_id: str) -> dict:
    ctx.require_secret_key()
    product = ctx.load(product_id, "product")
    if any(p["product"] == product_id for p in ctx.store.all("price")):
        raise errors.invalid_request(
            "This product cannot be deleted because it has one or more user-created prices.", code="resource_in_use"
        )
    ctx.store.put({"id": product_id, "object": "product", "deleted": True})
    ctx.emit("product.deleted", product)
    return {"id": product_id, "object": "product", "deleted": True}


def _of_ids(products: list[dict], params: dict) -> list[dict]:
    if "ids" not in params:
        return products
    return [p for p in products if p["id"] in params["ids"]]


list_products = list_endpoint(
    "/v1/products", "product", params="ProductListParams", filters=("active",), extra=("ids",), where=_of_ids
)


# --- prices --------------------------------------------------------------------------------


def _release_lookup_key(ctx: Context, lookup_key: str, transfer: bool) -> None:
    holder = next((p for p in ctx.store.all("price") if p.get("lookup_key") == lookup_key), None)
    if holder is None:
        return
    if not transfer:
        raise errors.invalid_request(
            f"A price (`{holder['id']}`) already uses that lookup key. Set transfer_lookup_key "
            "to transfer it to this price.",
            param="lookup_key",
            code="lookup_key_in_use",
        )
    holder["lookup_key"] = None
    ctx.store.put(holder)
    ctx.emit("price.updated", holder, {"lookup_key": lookup_key})


@endpoint(
    "POST",
    "/v1/prices",
    params="PriceCreateParams",
    supported=[
        "currency",
        "currency_options",
        "unit_amount",
        "product",
        "product_data[name]",
        "product_data[metadata]",
        "recurring[interval]",
        "recurring[interval_count]",
        "lookup_key",
        "transfer_lookup_key",
        "nickname",
        "metadata",
        "active",
    ],
)
def create_price(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "unit_amount" not in params:
        raise errors.missing_param("unit_amount")
    if params["unit_amount"] < 0:
        raise errors.invalid_request("Invalid non-negative integer", param="unit_amount")
    if "product" in params:
        product = ctx.load(params["product"], "product", param="product")
    elif "product_data" in params:
        product = ctx.store.put(new_product(params["product_data"], ctx.now()))
        ctx.emit("product.created", product)
    else:
        raise errors.missing_param("product")
    currency = check_currency_param(params["currency"], "currency")
    options = parse_currency_options(params["currency_options"], currency) if "currency_options" in params else {}
    if params.get("lookup_key"):
        _release_lookup_key(ctx, params["lookup_key"], params.get("transfer_lookup_key", False))
    recurring = None
    if "recurring" in params:
        interval = params["recurring"]["interval"]
        if interval not in ("day", "week", "month", "year"):
            raise errors.invalid_request(
                "Invalid recurring[interval]: must be one of day, month, week, or year", param="recurring[interval]"
            )
        recurring = {
            "interval": interval,
            "interval_count": params["recurring"].get("interval_count", 1),
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }
    price = {
        "id": new_id("price"),
        "object": "price",
        "active": params.get("active", True),
        "billing_scheme": "per_unit",
        "created": ctx.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": params.get("lookup_key"),
        "metadata": {},
        "nickname": params.get("nickname"),
        "product": product["id"],
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": params["unit_amount"],
        "unit_amount_decimal": str(params["unit_amount"]),
    }
    if options:
        price[PRIVATE] = {"currency_options": options}
    apply_metadata(price, params.get("metadata"))
    ctx.store.put(price)
    ctx.emit("price.created", price)
    return price


retrieve_price = retrieve_endpoint("/v1/prices/<price_id>", "price", params="PriceRetrieveParams")


@endpoint(
    "POST",
    "/v1/prices/<price_id>",
    params="PriceUpdateParams",
    supported=["active", "lookup_key", "transfer_lookup_key", "nickname", "metadata", "currency_options"],
)
def update_price(ctx: Context, params: dict, price_id: str) -> dict:
    ctx.require_secret_key()
    price = ctx.load(price_id, "price")
    previous = {}
    if params.get("lookup_key") and params["lookup_key"] != price.get("lookup_key"):
        _release_lookup_key(ctx, params["lookup_key"], params.get("transfer_lookup_key", False))
    for key in ("active", "lookup_key", "nickname"):
        if key in params:
            previous[key] = price[key]
            price[key] = params[key] if params[key] != "" else None
    if "metadata" in params:
        previous["metadata"] = dict(price["metadata"])
        apply_metadata(price, params["metadata"])
    if "currency_options" in params:  # amounts in other currencies may change ('' removes them all)
        private = price.setdefault(PRIVATE, {})
        changed = parse_currency_options(params["currency_options"], price["currency"])
        private["currency_options"] = {**private.get("currency_options", {}), **changed} if changed else {}
    ctx.store.put(price)
    ctx.emit("price.updated", price, previous)
    return price


def _of_lookup_keys(prices: list[dict], params: dict) -> list[dict]:
    if "lookup_keys" not in params:
        return prices
    return [p for p in prices if p.get("lookup_key") in params["lookup_keys"]]


list_prices = list_endpoint(
    "/v1/prices",
    "price",
    params="PriceListParams",
    filters=("active", "currency", "product", "type"),
    extra=("lookup_keys",),
    where=_of_lookup_keys,
)
