"""The catalog: load ``catalog.toml`` into the database, sync it to Stripe, read it back.

Sync is idempotent: Stripe prices are found by ``lookup_key``; a matching active price is
reused, a changed amount creates a new price with ``transfer_lookup_key=True`` and archives
the old one. Every write carries an idempotency key derived from the catalog entry and the
request contents.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import Connection, select, update
from sqlalchemy.orm import contains_eager

from ..extensions import db
from ..models import Price, Product
from ..models.catalog import describe_grants
from ..stripe_gateway import get_gateway, idempotency_key
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"[a-z0-9_]{1,64}")  # always fullmatch
CURRENCY_RE = re.compile(r"[a-z]{3}")


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    name: str
    description: str
    category: str
    kind: str
    points: int
    entitlement: str | None
    lookup_key: str
    amount: int
    currency: str
    interval: str | None
    sort_order: int


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.archived)} archived, {len(self.unchanged)} unchanged"
        )


# --------------------------------------------------------------------------- reading
def parse_catalog(text: str) -> list[CatalogEntry]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"catalog is not valid TOML: {err}") from err
    products = data.get("products")
    if not isinstance(products, dict) or not products:
        raise CatalogError("catalog has no [products.*] tables")
    entries: list[CatalogEntry] = []
    seen_lookup: set[str] = set()
    for position, (key, raw) in enumerate(products.items()):
        where = f"products.{key}"
        try:
            price = raw["price"]
            entry = CatalogEntry(
                key=key,
                name=str(raw["name"]).strip(),
                description=str(raw.get("description", "")).strip(),
                category=raw["category"],
                kind=raw["kind"],
                points=int(raw.get("points", 0)),
                entitlement=raw.get("entitlement"),
                lookup_key=price["lookup_key"],
                amount=price["amount"],
                currency=str(price["currency"]).lower(),
                interval=price.get("interval"),
                sort_order=int(raw.get("sort", position * 10)),
            )
        except KeyError as err:
            raise CatalogError(f"{where}: missing {err.args[0]!r}") from err
        if not KEY_RE.fullmatch(key) or not KEY_RE.fullmatch(str(entry.lookup_key)):
            raise CatalogError(f"{where}: keys must be lower-case letters, digits and _")
        if entry.category not in ("plan", "points"):
            raise CatalogError(f"{where}: category must be 'plan' or 'points'")
        if entry.kind not in ("subscription", "one_time"):
            raise CatalogError(f"{where}: kind must be 'subscription' or 'one_time'")
        if (entry.kind == "subscription") != (entry.interval is not None):
            raise CatalogError(f"{where}: a subscription needs price.interval; one_time must not have one")
        if entry.interval not in (None, "day", "week", "month", "year"):
            raise CatalogError(f"{where}: interval must be day, week, month or year")
        if not isinstance(entry.amount, int) or isinstance(entry.amount, bool) or entry.amount <= 0:
            raise CatalogError(f"{where}: price.amount must be a positive integer (minor units)")
        if not CURRENCY_RE.fullmatch(entry.currency):
            raise CatalogError(f"{where}: price.currency must be a 3-letter ISO code")
        if entry.points < 0:
            raise CatalogError(f"{where}: points must not be negative")
        if entry.lookup_key in seen_lookup:
            raise CatalogError(f"{where}: duplicate lookup_key {entry.lookup_key!r}")
        seen_lookup.add(entry.lookup_key)
        entries.append(entry)
    return entries


def read_catalog_file(path: str | Path | None = None) -> list[CatalogEntry]:
    path = Path(path or current_app.config["CATALOG_PATH"])
    return parse_catalog(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class CatalogItem:
    """One thing on sale, as the shop pages show it (plain values, hashable)."""

    lookup_key: str
    name: str
    description: str
    category: str
    kind: str
    points: int
    entitlement: str | None
    unit_amount: int
    currency: str
    interval: str | None

    @property
    def grants(self) -> str:
        return describe_grants(self.kind, self.points, self.entitlement)


_ITEM_COLUMNS = (
    Price.lookup_key,
    Product.name,
    Product.description,
    Product.category,
    Product.kind,
    Product.points,
    Product.entitlement,
    Price.unit_amount,
    Price.currency,
    Price.interval,
)
_ITEMS_QUERY = (
    select(*_ITEM_COLUMNS)
    .join(Product, Price.product_id == Product.id)
    .where(Price.active.is_(True), Product.active.is_(True))
    .order_by(Product.sort_order, Product.id)
)


CatalogRows = tuple[tuple[Any, ...], ...]


def catalog_rows(connection: Connection | None = None) -> CatalogRows:
    """What's on sale as plain tuples: ONE cheap Core query (no ORM identity map work).
    The result doubles as the cache key of the rendered catalog."""
    executor = connection if connection is not None else db.session
    return tuple(tuple(row) for row in executor.execute(_ITEMS_QUERY))


def catalog_items(rows: CatalogRows | None = None) -> list[CatalogItem]:
    return [CatalogItem(*row) for row in (catalog_rows() if rows is None else rows)]


def active_prices() -> list[Price]:
    """Everything on sale, plans first, with its product: ONE query."""
    stmt = (
        select(Price)
        .join(Price.product)
        .options(contains_eager(Price.product))
        .where(Price.active.is_(True), Product.active.is_(True))
        .order_by(Product.sort_order, Product.id)
    )
    return list(db.session.scalars(stmt))


def price_by_lookup_key(lookup_key: str) -> Price | None:
    stmt = (
        select(Price)
        .join(Price.product)
        .options(contains_eager(Price.product))
        .where(Price.lookup_key == lookup_key, Price.active.is_(True), Product.active.is_(True))
    )
    return db.session.scalar(stmt)


# --------------------------------------------------------------------------- loading
def load_into_db(entries: list[CatalogEntry]) -> SyncReport:
    """Upsert products/prices from the file (one transaction). Entries missing from the file
    are deactivated, never deleted (orders will point at them)."""
    report = SyncReport()
    products = {p.key: p for p in db.session.scalars(select(Product))}
    prices = {p.lookup_key: p for p in db.session.scalars(select(Price))}
    wanted = {e.key for e in entries}
    for e in entries:
        product = products.get(e.key)
        if product is None:
            product = Product(key=e.key)
            db.session.add(product)
            report.created.append(f"db product {e.key}")
        for attr, value in (
            ("name", e.name),
            ("description", e.description),
            ("category", e.category),
            ("kind", e.kind),
            ("points", e.points),
            ("entitlement", e.entitlement),
            ("sort_order", e.sort_order),
            ("active", True),
        ):
            if getattr(product, attr) != value:
                setattr(product, attr, value)
        price = prices.get(e.lookup_key)
        if price is None:
            price = Price(
                lookup_key=e.lookup_key,
                product=product,
                unit_amount=e.amount,
                currency=e.currency,
                interval=e.interval,
                active=True,
            )
            db.session.add(price)
            report.created.append(f"db price {e.lookup_key}")
        else:
            if (price.unit_amount, price.currency, price.interval) != (e.amount, e.currency, e.interval):
                price.unit_amount, price.currency, price.interval = e.amount, e.currency, e.interval
                report.updated.append(f"db price {e.lookup_key}")
            price.product = product
            price.active = True
    for key, product in products.items():
        if key not in wanted and product.active:
            product.active = False
            for price in product.prices:
                price.active = False
            report.archived.append(f"db product {key}")
    db.session.commit()
    return report


# --------------------------------------------------------------------------- Stripe sync
def _product_params(product: Product) -> dict[str, Any]:
    metadata = {"catalog_key": product.key, "category": product.category, "points": str(product.points)}
    if product.entitlement:  # Stripe drops empty metadata values, so only send real ones
        metadata["entitlement"] = product.entitlement
    params: dict[str, Any] = {"name": product.name, "metadata": metadata}
    if product.description:
        params["description"] = product.description
    return params


def _id_of(value: Any) -> str | None:
    """An expandable Stripe field: either the id or the expanded object."""
    return value.get("id") if isinstance(value, dict) else value


def _product_matches(remote: dict[str, Any], params: dict[str, Any]) -> bool:
    metadata = remote.get("metadata") or {}
    return (
        remote.get("active") is True
        and remote.get("name") == params["name"]
        and (remote.get("description") or "") == params.get("description", "")
        and all(metadata.get(k) == v for k, v in params["metadata"].items())
    )


@dataclass(frozen=True)
class _Row:
    """What the Stripe sync needs of one price row and its product, read before any call."""

    price_id: int
    product_id: int
    lookup_key: str
    unit_amount: int
    currency: str
    interval: str | None
    product_key: str
    product_active: bool
    selling: bool
    product_params: dict[str, Any]
    stripe_product_id: str | None
    stripe_price_id: str | None


def _snapshot() -> list[_Row]:
    """The catalog as the sync needs it; the read ends here (no transaction across Stripe)."""
    rows = [
        _Row(
            price_id=p.id,
            product_id=p.product.id,
            lookup_key=p.lookup_key,
            unit_amount=p.unit_amount,
            currency=p.currency,
            interval=p.interval,
            product_key=p.product.key,
            product_active=p.product.active,
            selling=p.active and p.product.active,
            product_params=_product_params(p.product),
            stripe_product_id=p.product.stripe_product_id,
            stripe_price_id=p.stripe_price_id,
        )
        for p in db.session.scalars(
            select(Price).join(Price.product).options(contains_eager(Price.product)).order_by(Product.sort_order)
        )
    ]
    read_then_release()
    return rows


def _save_id(model: type[Product] | type[Price], row_id: int, column: str, value: str) -> None:
    with unit_of_work():
        db.session.execute(
            update(model).where(model.id == row_id).values({column: value}).execution_options(synchronize_session=False)
        )


def _price_matches(remote: dict[str, Any], row: _Row) -> bool:
    recurring = remote.get("recurring") or {}
    return (
        remote.get("active") is True
        and remote.get("unit_amount") == row.unit_amount
        and (remote.get("currency") or "").lower() == row.currency
        and (recurring.get("interval") if recurring else None) == row.interval
    )


def _sync_product(row: _Row, product_id: str | None, report: SyncReport) -> str | None:
    """A product on sale exists at Stripe as in our catalog; returns its Stripe id."""
    gateway, params = get_gateway(), row.product_params
    if product_id:
        if not _product_matches(gateway.retrieve_product(product_id), params):
            changed = dict(params, active=True)
            gateway.update_product(
                product_id,
                changed,
                idempotency_key=idempotency_key("catalog-product-update", product_id, payload=changed),
            )
            report.updated.append(f"stripe product {row.product_key}")
        return product_id
    created = gateway.create_product(
        params, idempotency_key=idempotency_key("catalog-product-create", row.product_key, payload=params)
    )
    report.created.append(f"stripe product {row.product_key}")
    return str(created["id"])


def _archive(row: _Row, remote_price: dict[str, Any] | None, product_id: str | None, report: SyncReport) -> None:
    """Not on sale: its Stripe price is archived, and its product if the product is off sale."""
    gateway = get_gateway()
    if remote_price and remote_price.get("active"):
        _archive_price(remote_price["id"])
        report.archived.append(f"stripe price {row.lookup_key}")
    if product_id and not row.product_active and gateway.retrieve_product(product_id).get("active"):
        gateway.update_product(
            product_id, {"active": False}, idempotency_key=idempotency_key("catalog-product-archive", product_id)
        )
        report.archived.append(f"stripe product {row.product_key}")


def _archive_price(stripe_price_id: str) -> None:
    get_gateway().update_price(
        stripe_price_id, {"active": False}, idempotency_key=idempotency_key("catalog-price-archive", stripe_price_id)
    )


def _sync_price(row: _Row, remote_price: dict[str, Any] | None, product_id: str | None, report: SyncReport) -> str:
    """The active Stripe price for ``row``: the matching one, or a new one replacing it."""
    if remote_price and _price_matches(remote_price, row) and _id_of(remote_price.get("product")) == product_id:
        report.unchanged.append(f"stripe price {row.lookup_key}")
        return str(remote_price["id"])
    create: dict[str, Any] = {
        "product": product_id,
        "unit_amount": row.unit_amount,
        "currency": row.currency,
        "lookup_key": row.lookup_key,
        "transfer_lookup_key": True,
        "metadata": {"lookup_key": row.lookup_key, "catalog_key": row.product_key},
    }
    if row.interval:
        create["recurring"] = {"interval": row.interval}
    # The replaced price id is part of the key, so 5 -> 6 -> 5 dollars never replays the
    # first (now archived) price.
    replaces = remote_price["id"] if remote_price else "none"
    new_price = get_gateway().create_price(
        create, idempotency_key=idempotency_key("catalog-price-create", row.lookup_key, replaces, payload=create)
    )
    report.created.append(f"stripe price {row.lookup_key}")
    if remote_price and remote_price.get("active") and remote_price["id"] != new_price["id"]:
        _archive_price(remote_price["id"])
        report.archived.append(f"stripe price {row.lookup_key} ({remote_price['id']})")
    return str(new_price["id"])


def sync_to_stripe() -> SyncReport:
    """Make Stripe match our DB catalog, matching prices by lookup_key. Fetch, then apply:
    the catalog is read first, each Stripe id is saved in its own short unit of work."""
    report = SyncReport()
    rows = _snapshot()
    remote_by_key = {
        p.get("lookup_key"): p for p in get_gateway().list_prices_by_lookup_keys([r.lookup_key for r in rows])
    }
    product_ids = {r.product_id: r.stripe_product_id for r in rows}  # as saved during the sync
    for row in rows:
        remote_price = remote_by_key.get(row.lookup_key)
        product_id = product_ids[row.product_id]
        if remote_price and not product_id:
            product_id = _id_of(remote_price.get("product"))
        if row.selling:
            product_id = _sync_product(row, product_id, report)
        if product_id and product_ids[row.product_id] != product_id:
            _save_id(Product, row.product_id, "stripe_product_id", product_id)
            product_ids[row.product_id] = product_id
        if not row.selling:
            _archive(row, remote_price, product_id, report)
            continue
        stripe_price_id = _sync_price(row, remote_price, product_id, report)
        if row.stripe_price_id != stripe_price_id:
            _save_id(Price, row.price_id, "stripe_price_id", stripe_price_id)
    return report


def sync_catalog(path: str | Path | None = None, *, to_stripe: bool = True) -> tuple[SyncReport, SyncReport]:
    """`flask catalog sync`: file -> DB -> Stripe. Returns (db report, stripe report)."""
    entries = read_catalog_file(path)
    db_report = load_into_db(entries)
    stripe_report = sync_to_stripe() if to_stripe else SyncReport()
    return db_report, stripe_report
