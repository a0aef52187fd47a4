#!/usr/bin/env python
"""Benchmark: the admin purchases page at 1,000 and at 100,000 orders.

    python bench/seed_orders.py [--database-url URL] [--orders 100000] [--small 1000] [--runs 15]

Builds a throw-away database (a temporary SQLite file by default; with ``--database-url
postgresql+psycopg://…`` the ``public`` schema of that database is DROPPED and recreated),
runs the migrations, loads the catalog (no Stripe needed), bulk-inserts buyers and orders
(Core ``executemany`` in batches), and requests the purchases page in-process as an admin:
unfiltered, filtered by status, by product, by date range, a search by email, by PaymentIntent,
and the next page through the keyset cursor. For each it prints the median server time and the
number of SQL statements (counted with a ``before_cursor_execute`` listener) -- first with
``--small`` orders, then with ``--orders``. The statement count must not grow with the orders.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, func, insert, select, text  # noqa: E402

STATUSES = [
    ("paid", 70),
    ("failed", 8),
    ("pending", 8),
    ("canceled", 3),
    ("expired", 3),
    ("refunded", 3),
    ("partially_refunded", 2),
    ("processing", 2),
    ("disputed", 1),
]
METHODS = ["payment_element", "saved_card", "checkout"]
USERS_PER_ORDER = 0.1  # one buyer for every ten orders
BATCH = 5000
ADMIN_PASSWORD = secrets.token_urlsafe(16)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=None, help="default: a temporary SQLite file (PostgreSQL: schema is reset!)"
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=15, help="requests per figure (median)")
    return parser.parse_args()


def reset_database(url: str | None) -> str:
    if url is None:
        return "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="seed-orders-"), "bench.sqlite3")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def make_app(url: str):
    from storefront import create_app

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": secrets.token_hex(32),
            "SQLALCHEMY_DATABASE_URI": url,
            "STRIPE_SECRET_KEY": "sk_test_sandbox",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_sandbox",
            "STRIPE_API_BASE": "http://127.0.0.1:9",  # never contacted: the page reads our DB only
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )


class Seeder:
    """Bulk inserts straight through Core: no ORM objects, no password hashing."""

    def __init__(self, app, rng: random.Random):
        from storefront.extensions import db
        from storefront.models import Price, Product

        self.db = db
        self.rng = rng
        self.prices = db.session.execute(
            select(Price.id, Price.lookup_key, Price.unit_amount, Price.currency, Product.name, Product.points)
            .join(Product, Product.id == Price.product_id)
            .where(Price.interval.is_(None))
        ).all()
        self.user_ids: list[int] = []
        self.statuses = [s for s, w in STATUSES for _ in range(w)]
        self.now = datetime.now(UTC)

    def users(self, n: int) -> None:
        from storefront.models import User

        start = len(self.user_ids)
        rows = [
            {
                "public_id": secrets.token_hex(16),
                "email": f"buyer{start + i}@example.com",
                "name": f"Buyer {start + i}",
                "password_hash": "!",
                "is_admin": False,
                "created_at": self.now - timedelta(days=400),
                "points_balance": 0,
            }
            for i in range(n)
        ]
        for chunk in range(0, n, BATCH):
            self.db.session.execute(insert(User), rows[chunk : chunk + BATCH])
        self.db.session.commit()
        self.user_ids = list(self.db.session.scalars(select(User.id).order_by(User.id)))

    def orders(self, n: int) -> None:
        from storefront.models import Order
        from storefront.models.order import COLLECTED

        rng = self.rng
        done = 0
        while done < n:
            rows = []
            for _ in range(min(BATCH, n - done)):
                price = rng.choice(self.prices)
                status = rng.choice(self.statuses)
                created = self.now - timedelta(seconds=rng.randint(0, 365 * 86400))
                collected = status in COLLECTED
                refunded = (
                    price.unit_amount
                    if status == "refunded"
                    else price.unit_amount // 2
                    if status == "partially_refunded"
                    else 0
                )
                method = rng.choice(METHODS)
                rows.append(
                    {
                        "public_id": "ord_" + secrets.token_urlsafe(16),
                        "user_id": rng.choice(self.user_ids),
                        "price_id": price.id,
                        "lookup_key": price.lookup_key,
                        "product_name": price.name,
                        "points": price.points,
                        "amount": price.unit_amount,
                        "currency": price.currency,
                        "method": method,
                        "status": status,
                        "amount_refunded": refunded,
                        "stripe_payment_intent_id": "pi_" + secrets.token_hex(12),
                        "stripe_checkout_session_id": (
                            "cs_test_" + secrets.token_hex(12) if method == "checkout" else None
                        ),
                        "stripe_charge_id": "ch_" + secrets.token_hex(12) if collected else None,
                        "lock_version": 0,
                        "created_at": created,
                        "updated_at": created,
                        "paid_at": created + timedelta(seconds=5) if collected else None,
                    }
                )
            self.db.session.execute(insert(Order), rows)
            self.db.session.commit()
            done += len(rows)


def log_in(client, email: str) -> None:
    """Sign in through the real form, so the session carries whatever sign-in puts in it."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    answer = client.post(
        "/login", data={"email": email, "password": ADMIN_PASSWORD, "csrf_token": token.group(1) if token else ""}
    )
    if answer.status_code != 302:
        raise SystemExit(f"admin log-in failed ({answer.status_code})")


def measure(app, admin_id: int, runs: int) -> list[tuple[str, float, int, float, float]]:
    """Per page: label, median ms, query count, median SQL ms, median slowest-query ms."""
    from storefront.extensions import db
    from storefront.models import Order, User

    with app.app_context():
        admin = db.session.get(User, admin_id)
        assert admin is not None
        admin_email = admin.email
        sample = db.session.execute(
            select(Order.stripe_payment_intent_id, Order.user_id).order_by(Order.id.desc()).limit(1)
        ).one()
        email = db.session.scalar(text("select email from users where id = :id"), {"id": sample.user_id})
        month_ago = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    client = app.test_client()
    log_in(client, admin_email)
    first = client.get("/admin/purchases").get_data(as_text=True)
    next_link = re.search(r'href="/admin/purchases\?after=([^"&]+)"', first)
    if next_link is None:
        raise SystemExit("/admin/purchases shows no next-page link: seed more than one page of orders")
    cursor = next_link.group(1)
    pages = [
        ("all orders, page 1", "/admin/purchases"),
        ("all orders, page 2 (keyset)", f"/admin/purchases?after={cursor}"),
        ("status=paid", "/admin/purchases?status=paid"),
        ("product=points_medium", "/admin/purchases?product=points_medium"),
        ("last 30 days", f"/admin/purchases?date_from={month_ago}"),
        ("search: email", f"/admin/purchases?q={email}"),
        ("search: PaymentIntent id", f"/admin/purchases?q={sample.stripe_payment_intent_id}"),
        ("dashboard", "/admin/"),
    ]
    engine = None
    with app.app_context():
        engine = db.engine
    counter = {"n": 0, "started": 0.0, "sql": 0.0, "slowest": 0.0}

    def count(*_args, **_kwargs):
        counter["n"] += 1
        counter["started"] = time.perf_counter()

    def done(*_args, **_kwargs):
        took = (time.perf_counter() - counter["started"]) * 1000
        counter["sql"] += took
        counter["slowest"] = max(counter["slowest"], took)

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "after_cursor_execute", done)
    out = []
    try:
        for label, url in pages:
            times: list[float] = []
            sql: list[float] = []
            slowest: list[float] = []
            queries: set[int] = set()
            client.get(url)  # warm
            for _ in range(runs):
                counter.update(n=0, sql=0.0, slowest=0.0)
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
                queries.add(int(counter["n"]))
                sql.append(counter["sql"])
                slowest.append(counter["slowest"])
            assert len(queries) == 1, f"{label}: query count varies {queries}"
            out.append(
                (label, statistics.median(times), queries.pop(), statistics.median(sql), statistics.median(slowest))
            )
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "after_cursor_execute", done)
    return out


def main() -> None:
    args = parse_args()
    url = reset_database(args.database_url)
    app = make_app(url)
    rng = random.Random(7)
    from storefront.extensions import db
    from storefront.models import Order, User
    from storefront.services.catalog import sync_catalog

    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        sync_catalog(to_stripe=False)
        admin = User(email="admin@bench.example", name="Bench Admin", is_admin=True)
        admin.set_password(ADMIN_PASSWORD)
        db.session.add(admin)
        db.session.commit()
        admin_id = admin.id
        seeder = Seeder(app, rng)
    dialect = url.split(":", 1)[0]
    print(f"database: {dialect} ({url.rsplit('/', 1)[-1]})")
    results = {}
    for target in (args.small, args.orders):
        with app.app_context():
            seeder.db = db
            have = db.session.scalar(select(func.count(Order.id)))
            started = time.perf_counter()
            want_users = max(1, int(target * USERS_PER_ORDER))
            seeder.users(want_users - len(seeder.user_ids))
            seeder.orders(target - have)
            if dialect.startswith("postgresql"):
                db.session.execute(text("ANALYZE"))
                db.session.commit()
            else:
                db.session.execute(text("ANALYZE"))
                db.session.commit()
            took = time.perf_counter() - started
            print(
                f"seeded {target - have:,} orders (+ buyers) in {took:.1f}s; "
                f"now {target:,} orders, {len(seeder.user_ids):,} buyers"
            )
        results[target] = measure(app, admin_id, args.runs)
    small, large = results[args.small], results[args.orders]
    print()
    print(f"{'':32} {f'{args.small:,} orders':^30} | {f'{args.orders:,} orders':^30}")
    print(
        f"{'page':32} {'ms':>7} {'queries':>7} {'sql ms':>7} {'max q':>6} | "
        f"{'ms':>7} {'queries':>7} {'sql ms':>7} {'max q':>6}"
    )
    grew = False
    for (label, t1, q1, s1, m1), (_, t2, q2, s2, m2) in zip(small, large, strict=True):
        grew |= q2 != q1
        print(f"{label:32} {t1:7.1f} {q1:7d} {s1:7.1f} {m1:6.1f} | {t2:7.1f} {q2:7d} {s2:7.1f} {m2:6.1f}")
    print(
        "(ms: median server time per request; sql ms: time inside the database driver; "
        "max q: the slowest statement -- the totals aggregate over the filtered set)"
    )
    print()
    print(
        "query count: "
        + ("GREW with the number of orders!" if grew else "constant (does not grow with the number of orders)")
    )
    sys.exit(1 if grew else 0)


if __name__ == "__main__":
    main()
