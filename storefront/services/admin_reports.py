"""What the admin pages read: the purchases table (filters, search, totals, CSV) and the
dashboard's figures.

The purchases page is a constant number of indexed queries whatever the number of orders:
one page of rows (keyset pagination on ``(created_at, id)``, joined to the buyer by primary
key), one aggregate for the totals of the filtered set, and the product list for the filter.
A search term is classified by its shape (``ord_``, ``pi_``, ``cs_``, ``ch_``, ``in_``, an
email) so it hits a unique index instead of a ``LIKE`` over every order.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, case, func, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import Select

from .. import money
from ..extensions import db
from ..models import Order, Price, Product, Subscription, User
from ..models.base import utcnow
from ..models.order import COLLECTED, METHODS, STATUSES, OrderStatus
from ..params import InvalidParameter, encode_cursor, parse_cursor, parse_date

PAGE_SIZE = 50


# --- filters ----------------------------------------------------------------------------------


@dataclass
class PurchaseFilters:
    status: str | None = None
    product: str | None = None  # a lookup key
    method: str | None = None
    date_from: date | None = None  # inclusive, UTC
    date_to: date | None = None  # inclusive, UTC
    q: str | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> PurchaseFilters:
        f = cls()
        status = (args.get("status") or "").strip()
        f.status = status if status in STATUSES else None
        method = (args.get("method") or "").strip()
        f.method = method if method in METHODS else None
        f.product = (args.get("product") or "").strip()[:64] or None
        f.q = (args.get("q") or "").strip()[:254] or None
        for name in ("date_from", "date_to"):
            raw = (args.get(name) or "").strip()
            if raw:
                try:
                    setattr(f, name, parse_date(raw, name))
                except InvalidParameter as err:
                    f.errors.append(err.message)
        return f

    def as_args(self) -> dict[str, str]:
        out = {
            "status": self.status,
            "product": self.product,
            "method": self.method,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "q": self.q,
        }
        return {k: v for k, v in out.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.as_args())


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def search_condition(q: str) -> ColumnElement[bool]:
    """A search term -> one indexed condition on orders."""
    term = q.strip()
    lowered = term.lower()
    if term.startswith("ord_"):
        return Order.public_id == term
    if term.startswith("pi_"):
        return Order.stripe_payment_intent_id == term
    if term.startswith("cs_"):
        return Order.stripe_checkout_session_id == term
    if term.startswith(("ch_", "py_")):
        return Order.stripe_charge_id == term
    if term.startswith("in_"):
        return Order.stripe_invoice_id == term
    if term.startswith("sub_"):
        return Order.stripe_subscription_id == term
    if "@" in term:  # an email: the unique index on users.email, then orders by user; a guest's orders too
        return or_(Order.user_id.in_(select(User.id).where(User.email == lowered)), Order.buyer_email == lowered)
    # part of an email or a name: the (small) users table, then orders by user
    escaped = lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Order.user_id.in_(
        select(User.id).where(
            or_(User.email.like(f"{escaped}%", escape="\\"), func.lower(User.name).like(f"{escaped}%", escape="\\"))
        )
    )


def conditions(f: PurchaseFilters) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if f.status:
        out.append(Order.status == f.status)
    if f.product:
        out.append(Order.lookup_key == f.product)
    if f.method:
        out.append(Order.method == f.method)
    if f.date_from:
        out.append(Order.created_at >= _day_start(f.date_from))
    if f.date_to:
        out.append(Order.created_at < _day_start(f.date_to + timedelta(days=1)))
    if f.q:
        out.append(search_condition(f.q))
    return out


# --- the table ------------------------------------------------------------------------------------


@dataclass
class Page:
    rows: Sequence[Any]  # Rows of _rows_query
    next_cursor: str | None
    first: bool


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The keyset position in ``?after=`` (None for the first page); a cursor we did not write
    raises :class:`InvalidParameter` (400) rather than silently showing the first page."""
    if not cursor:
        return None
    return parse_cursor(cursor, "after")


def _rows_query(f: PurchaseFilters) -> Select[*tuple[Any, ...]]:
    return (
        select(
            Order.id,
            Order.public_id,
            Order.created_at,
            Order.product_name,
            Order.lookup_key,
            Order.amount,
            Order.currency,
            Order.amount_refunded,
            Order.status,
            Order.method,
            Order.points,
            Order.stripe_payment_intent_id,
            Order.stripe_checkout_session_id,
            Order.stripe_invoice_id,
            func.coalesce(User.email, Order.buyer_email).label("email"),  # an unclaimed guest order: its address
            User.public_id.label("user_public_id"),
        )
        .outerjoin(User, User.id == Order.user_id)
        .where(*conditions(f))
    )


def purchases_page(f: PurchaseFilters, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """One page, newest first; keyset pagination (``cursor`` = the last row's position)."""
    query = _rows_query(f)
    position = decode_cursor(cursor)
    if position:
        query = query.where(tuple_(Order.created_at, Order.id) < tuple_(*position))
    rows = db.session.execute(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(size + 1)).all()
    more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None, first=position is None
    )


@dataclass
class Totals:
    count: int
    by_currency: list[dict[str, Any]]


def purchases_totals(f: PurchaseFilters) -> Totals:
    """Count, money collected and refunded, per currency, for the whole filtered set."""
    collected = case((Order.status.in_(COLLECTED), Order.amount), else_=0)
    paid = case((Order.status.in_(COLLECTED), 1), else_=0)
    query = (
        select(
            Order.currency, func.count(Order.id), func.sum(paid), func.sum(collected), func.sum(Order.amount_refunded)
        )
        .where(*conditions(f))
        .group_by(Order.currency)
        .order_by(Order.currency)
    )
    per: list[dict[str, Any]] = []
    count = 0
    for currency, n, n_paid, gross, refunded in db.session.execute(query):
        count += n
        gross, refunded = int(gross or 0), int(refunded or 0)
        per.append(
            {
                "currency": currency,
                "count": n,
                "paid": int(n_paid or 0),
                "gross": gross,
                "refunded": refunded,
                "net": gross - refunded,
            }
        )
    return Totals(count, per)


def product_choices() -> list[tuple[str, str]]:
    return [
        (key, name)
        for key, name in db.session.execute(
            select(Price.lookup_key, Product.name)
            .join(Product, Product.id == Price.product_id)
            .order_by(Product.sort_order, Price.id)
        )
    ]


# --- CSV ------------------------------------------------------------------------------------------

CSV_HEADER = [
    "created_at",
    "order_id",
    "email",
    "product",
    "lookup_key",
    "method",
    "status",
    "amount",
    "currency",
    "amount_refunded",
    "points",
    "payment_intent",
    "checkout_session",
    "invoice",
]


def major(amount: int, currency: str) -> str:
    """Integer minor units -> "12.50" (no symbol, for CSV; the currency's own digits)."""
    return money.format_plain(amount, currency)


def _cell(value: object) -> str:
    """No spreadsheet formulas from user data (CSV injection)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_row(row: Row[Any]) -> list[str]:
    return [
        row.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        row.public_id,
        _cell(row.email),
        _cell(row.product_name),
        row.lookup_key,
        row.method,
        row.status,
        major(row.amount, row.currency),
        row.currency,
        major(row.amount_refunded, row.currency),
        str(row.points),
        row.stripe_payment_intent_id or "",
        row.stripe_checkout_session_id or "",
        row.stripe_invoice_id or "",
    ]


def purchases_csv(f: PurchaseFilters, *, batch: int = 1000) -> Iterator[str]:
    """The whole filtered set as CSV, newest first, streamed in batches (``yield_per``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    query = _rows_query(f).order_by(Order.created_at.desc(), Order.id.desc()).execution_options(yield_per=batch)
    for n, row in enumerate(db.session.execute(query), start=1):
        writer.writerow(csv_row(row))
        if n % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate(0)
    yield buffer.getvalue()


# --- the dashboard --------------------------------------------------------------------------------


def _day(column: InstrumentedAttribute[Any]) -> ColumnElement[str]:
    """A UTC calendar day from a timestamp column, on SQLite and PostgreSQL."""
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


@dataclass
class Dashboard:
    days: list[dict[str, Any]]  # [{day, amount, count}] for the main currency, oldest first
    currency: str
    other_currencies: list[dict[str, Any]]  # revenue in other currencies over the 30 days
    today: int
    month: int
    paid: int
    failed: int
    success_rate: float | None
    refunded: int
    disputes: Sequence[Any]  # Rows: public_id, product_name, amount, currency, updated_at, email
    subscriptions: list[dict[str, Any]]


#: the dashboard's open disputes, newest first; an unclaimed guest order shows its address
_OPEN_DISPUTES = (
    select(
        Order.public_id,
        Order.product_name,
        Order.amount,
        Order.currency,
        Order.updated_at,
        func.coalesce(User.email, Order.buyer_email).label("email"),
    )
    .outerjoin(User, User.id == Order.user_id)
    .where(Order.status == OrderStatus.DISPUTED)
    .order_by(Order.created_at.desc())
    .limit(50)
)


def dashboard(now: datetime | None = None, days: int = 30) -> Dashboard:
    now = now or utcnow()
    today = now.date()
    start_day = today - timedelta(days=days - 1)
    start = _day_start(start_day)
    month_start = _day_start(today.replace(day=1))
    since = min(start, month_start)
    day = _day(Order.paid_at).label("day")
    rows = db.session.execute(
        select(day, Order.currency, func.count(Order.id), func.sum(Order.amount))
        .where(Order.paid_at >= since, Order.status.in_(COLLECTED))
        .group_by(day, Order.currency)
    ).all()
    by_currency: dict[str, dict[str, tuple[int, int]]] = {}
    for d, currency, n, amount in rows:
        by_currency.setdefault(currency, {})[d] = (int(n), int(amount or 0))
    currency = max(by_currency, key=lambda c: sum(a for _, a in by_currency[c].values()), default="usd")
    series = by_currency.get(currency, {})
    chart = []
    for i in range(days):
        d = (start_day + timedelta(days=i)).isoformat()
        n, amount = series.get(d, (0, 0))
        chart.append({"day": d, "amount": amount, "count": n})
    today_key = today.isoformat()
    month_prefix = today_key[:7]
    others = [
        {"currency": c, "amount": sum(a for k, (_, a) in v.items() if k >= start_day.isoformat())}
        for c, v in sorted(by_currency.items())
        if c != currency
    ]

    created = Order.created_at >= start
    counts = db.session.execute(
        select(
            func.sum(case((Order.status.in_(COLLECTED), 1), else_=0)),
            func.sum(case((Order.status == OrderStatus.FAILED, 1), else_=0)),
            func.sum(case((Order.status.in_(COLLECTED), Order.amount_refunded), else_=0)),
        ).where(created)
    ).one()
    paid, failed, refunded = (int(counts[0] or 0), int(counts[1] or 0), int(counts[2] or 0))
    disputes = db.session.execute(_OPEN_DISPUTES).all()
    return Dashboard(
        days=chart,
        currency=currency,
        other_currencies=others,
        today=series.get(today_key, (0, 0))[1],
        month=sum(a for k, (_, a) in series.items() if k.startswith(month_prefix)),
        paid=paid,
        failed=failed,
        success_rate=(paid / (paid + failed)) if paid + failed else None,
        refunded=refunded,
        disputes=disputes,
        subscriptions=active_subscriptions(),
    )


def active_subscriptions() -> list[dict[str, Any]]:
    """Subscriptions that still bill (active, trialing or past due), per plan."""
    rows = db.session.execute(
        select(Product.name, func.count(Subscription.id))
        .join(Price, Price.id == Subscription.price_id)
        .join(Product, Product.id == Price.product_id)
        .where(Subscription.status.in_(("active", "trialing", "past_due")))
        .group_by(Product.name)
        .order_by(Product.name)
    )
    return [{"plan": name, "count": int(n)} for name, n in rows]
