#!/usr/bin/env python
"""Benchmark of buying: the status poll (and the webhook helpers bench_queue.py uses).

    python bench/bench_buying.py [status] [--duration 10] [--connections 50] [--rounds 3]

status
    ``GET /orders/<id>/status`` for a logged-in buyer's PAID order (no Stripe sync is due, so
    it is answered by web/status_fast_path.py from one indexed read), loaded with wrk
    carrying the order page's status token (``Authorization: Bearer``, see
    web/order_status.py; no cookie), against a bare Flask hello-world with the same gunicorn
    settings (throw-away SQLite DB, alternating rounds; helpers of bench_catalog.py).
    Target: >= 0.7x hello-world, one query per poll.

The webhook burst (signed events on PostgreSQL, acknowledged, processed by the queue's workers,
exactly-once checked) is bench_queue.py; the helpers it uses live here: :func:`signed`,
:func:`succeeded_event`, :func:`post_all`, :func:`check_exactly_once`, :func:`throwaway_postgres`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_catalog import (  # noqa: E402
    bench_env,
    compare_with_hello_world,
    found,
    seed_store,
    server_options,
)

USER_AGENT = "storefront-bench"
PASSWORD = "bench-password-2024"
WEBHOOK_SECRET = "whsec_storefront_bench"


@contextlib.contextmanager
def store_app(env: dict):
    """The store app in this process, configured from ``env`` as gunicorn's will be."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        from storefront import create_app
        from storefront.extensions import db

        app = create_app()
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def make_buyers(count: int) -> list:
    from werkzeug.security import generate_password_hash

    from storefront.extensions import db
    from storefront.models import User

    password_hash = generate_password_hash(PASSWORD, method="scrypt")  # once, not per buyer
    users = [
        User(
            email=f"bench-buyer-{i}@example.com",
            name=f"Bench Buyer {i}",
            password_hash=password_hash,
            stripe_customer_id=f"cus_bench_{i}",
        )
        for i in range(count)
    ]
    db.session.add_all(users)
    db.session.commit()
    return users


def make_orders(users: list, count: int, *, status: str, lookup_key: str = "points_small") -> list:
    from sqlalchemy import select

    from storefront.extensions import db
    from storefront.models import Order, Price
    from storefront.models.base import utcnow
    from storefront.models.order import new_order_id

    price = db.session.scalar(select(Price).where(Price.lookup_key == lookup_key))
    if price is None:
        raise SystemExit(f"no price {lookup_key!r} in the catalog: seed the store first")
    orders = []
    for i in range(count):
        public_id = new_order_id()
        orders.append(
            Order(
                public_id=public_id,
                user_id=users[i % len(users)].id,
                price_id=price.id,
                lookup_key=price.lookup_key,
                product_name=price.product.name,
                points=price.product.points,
                amount=price.unit_amount,
                currency=price.currency,
                method="payment_element",
                status=status,
                stripe_payment_intent_id=f"pi_bench_{public_id.replace('-', '_')}",  # Stripe-like: no "-"
                paid_at=utcnow() if status == "paid" else None,
            )
        )
    db.session.add_all(orders)
    db.session.commit()
    return orders


# --- the status poll -----------------------------------------------------------------------------


def log_in(app, email: str) -> int:
    """Log in through the real form (CSRF and all); the id of the sign-in row it made."""
    from sqlalchemy import func, select

    from storefront.extensions import db
    from storefront.models import User, UserSession

    client = app.test_client()
    headers = {"User-Agent": USER_AGENT}
    page = client.get("/login", headers=headers).get_data(as_text=True)
    token = found(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token}, headers=headers)
    assert answer.status_code == 302, f"log-in failed ({answer.status_code})"
    return db.session.execute(select(func.max(UserSession.id)).join(User).where(User.email == email)).scalar_one()


def status_token(app, order, sign_in_id: int) -> str:
    """The token the order page would embed (it embeds one while the order is open; the bench
    polls a paid order, so it asks the app's own token maker for it)."""
    from storefront.web import order_status

    return order_status.tokens(app).issue(order.public_id, order.user_id, sign_in_id)


def queries_per_status_poll(app, headers: dict, path: str) -> tuple[list[str], dict]:
    """The SQL one poll runs, as gunicorn's workers would run it (no app context around)."""
    from sqlalchemy import event

    from storefront.extensions import db

    seen: list[str] = []
    answers = []
    engine = db.engine

    def poll():  # a thread of its own: no app context (and no cached user) leaks in
        answers.append(app.test_client().get(path, headers=headers))

    listener = lambda *a: seen.append(a[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        thread = threading.Thread(target=poll)
        thread.start()
        thread.join()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert answers and answers[0].status_code == 200, answers
    return seen, answers[0].get_json()


def bench_status(args) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="storefront-bench-"))
    env = bench_env(f"sqlite:///{workdir}/bench.sqlite3")
    try:
        seed_store(env)
        with store_app(env) as app:
            (buyer,) = make_buyers(1)
            (order,) = make_orders([buyer], 1, status="paid")
            path = f"/orders/{order.public_id}/status"
            headers = {
                "Authorization": f"Bearer {status_token(app, order, log_in(app, buyer.email))}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            }
            queries, body = queries_per_status_poll(app, headers, path)
        print(f"GET {path} -> {json.dumps(body)}")
        print(f"DB queries per poll: {len(queries)}")
        for sql in queries:
            print("   ", " ".join(sql.split())[:110])
        results = compare_with_hello_world(
            "status",
            path,
            env,
            args,
            wrk_extra=[arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = results["ratio"] >= 0.7 and results["status"]["non2xx"] == 0 and body["status"] == "paid" and len(queries) == 1
    print("target: status poll >= 0.70x hello-world, 1 query, no errors ->", "met" if ok else "NOT met")
    return ok


# --- the webhook burst ---------------------------------------------------------------------------


def signed(payload: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header, computed as Stripe does."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def succeeded_event(order, created: int) -> bytes:
    pi = {
        "id": order.stripe_payment_intent_id,
        "object": "payment_intent",
        "amount": order.amount,
        "amount_received": order.amount,
        "currency": order.currency,
        "status": "succeeded",
        "latest_charge": "ch_" + order.stripe_payment_intent_id[3:],
        "metadata": {"order_id": order.public_id},
        "livemode": False,
    }
    event = {
        "id": "evt_" + order.stripe_payment_intent_id[3:],
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "type": "payment_intent.succeeded",
        "data": {"object": pi},
        "request": {"id": None, "idempotency_key": None},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def post_all(port: int, deliveries: list[tuple[bytes, str]], senders: int) -> tuple[float, dict]:
    """POST every delivery to the webhook route, ``senders`` at a time; (seconds, {status: count}).

    One asyncio loop writing prepared request bytes on raw sockets (a connection per delivery, as
    gunicorn's sync workers close each): the load generator shares the CPUs with the store, so it
    must cost little -- a tenth of a millisecond per delivery, a quarter of a thread pool of
    ``http.client``. A delivery whose connection fails is retried twice (status 599 after that)."""
    requests = [_request_bytes(port, body, signature) for body, signature in deliveries]

    async def send(request: bytes) -> int:
        for attempt in range(3):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(request)
                    answer = await asyncio.wait_for(reader.read(), timeout=30)
                finally:
                    writer.close()
                return int(answer.split(b" ", 2)[1])
            except (TimeoutError, OSError, IndexError, ValueError):
                if attempt == 2:
                    return 599
                await asyncio.sleep(0.05)
        return 599

    async def send_all() -> list[int]:
        gate = asyncio.Semaphore(senders)

        async def gated(request: bytes) -> int:
            async with gate:
                return await send(request)

        return await asyncio.gather(*(gated(request) for request in requests))

    started = time.perf_counter()
    statuses = asyncio.run(send_all())
    elapsed = time.perf_counter() - started
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return elapsed, counts


def _request_bytes(port: int, body: bytes, signature: str) -> bytes:
    head = (
        f"POST /api/stripe/webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nStripe-Signature: {signature}\r\n"
        "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def check_exactly_once(n_orders: int) -> list[str]:
    """Problems found in the books after the burst (empty: exactly once held)."""
    from sqlalchemy import func, select

    from storefront.extensions import db
    from storefront.models import Order, OrderTransition, PointsEntry, StripeEvent, User

    problems = []
    count = lambda q: db.session.scalar(q)  # noqa: E731
    paid = count(select(func.count(Order.id)).where(Order.status == "paid"))
    if paid != n_orders:
        problems.append(f"{paid} of {n_orders} orders paid")
    moves = count(select(func.count(OrderTransition.id)).where(OrderTransition.to_status == "paid"))
    twice = count(
        select(func.count()).select_from(
            select(OrderTransition.order_id)
            .where(OrderTransition.to_status == "paid")
            .group_by(OrderTransition.order_id)
            .having(func.count() > 1)
            .subquery()
        )
    )
    if moves != n_orders or twice:
        problems.append(f"{moves} '-> paid' transitions, {twice} orders paid more than once")
    entries = count(select(func.count(PointsEntry.id)).where(PointsEntry.reason == "purchase"))
    if entries != n_orders:
        problems.append(f"{entries} purchase entries in the ledger, expected {n_orders}")
    wrong = count(
        select(func.count(User.id)).where(
            User.points_balance
            != select(func.coalesce(func.sum(PointsEntry.amount), 0))
            .where(PointsEntry.user_id == User.id)
            .scalar_subquery()
        )
    )
    if wrong:
        problems.append(f"{wrong} buyers' balance differs from their ledger")
    stored = count(select(func.count(StripeEvent.id)))
    unprocessed = count(select(func.count(StripeEvent.id)).where(StripeEvent.processed_at.is_(None)))
    if stored != n_orders or unprocessed:
        problems.append(f"{stored} events stored (expected {n_orders}), {unprocessed} unprocessed")
    return problems


@contextlib.contextmanager
def throwaway_postgres(server_url: str, name: str):
    """A fresh database ``name`` on the server of ``server_url``; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    parser = server_options(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("which", nargs="?", choices=("status",), default="status")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print("== status poll ==")
    return 0 if bench_status(args) else 1


if __name__ == "__main__":
    sys.exit(main())
