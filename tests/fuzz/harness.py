"""The fuzz harness: a seeded store, three identities, hostile requests, and the two checks.

Every request goes through the Flask test client into the real app, which talks to the real
sandbox over HTTP. After each request the harness takes a fingerprint of the database (row
counts and a hash of every table in ``db.metadata``) and of the sandbox's objects; a 4xx
answer must leave both unchanged, and no answer may be a 5xx.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import time
import traceback
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from storefront.extensions import db, limiter

from ..conftest import TEST_PASSWORD, browser_confirm, csrf_token_from, sign_payload
from ..queue_worker import settle

ROOT = Path(__file__).resolve().parents[2]
ADMIN_EMAIL = "fuzz-admin@example.com"
BUYER_EMAIL = "fuzz-buyer@example.com"
OTHER_EMAIL = "fuzz-other@example.com"
WEBHOOK_SECRET = "whsec_fuzz_" + "0123456789abcdef" * 2

#: Columns left out of the fingerprint. Bookkeeping, not state: when a row's mirror of Stripe was
#: last refreshed (``synced_at``, ``fetched_at``: a read-through sync runs before an answer is
#: known), the row-lock counter (``lock_version``: bumped to take the lock, see
#: ``subscription_sync.lock_subscription``) and ``updated_at`` (set by any write; a real change also
#: changes another column, which is caught). Last-seen style columns, if any appear.
VOLATILE_COLUMN = re.compile(
    r"^(synced_at|fetched_at|lock_version|updated_at|last_seen\w*|last_used\w*"
    r"|last_login\w*)$"
)

#: one run's seed: random unless FUZZ_SEED is set (printed in the summary to replay a run)
FUZZ_SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(1, 2**31))


# --------------------------------------------------------------------------- run statistics
@dataclass
class Failure:
    key: tuple
    kind: str  # "server error" | "state change on 4xx" | "stream error"
    endpoint: str
    method: str
    identity: str
    status: int
    request: str
    detail: str
    count: int = 1


@dataclass
class Stats:
    requests: int = 0
    routes: set = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    by_route: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    server_errors: int = 0
    state_changes: int = 0
    failures: dict = field(default_factory=dict)
    seconds: float = 0.0
    timing: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: GET/HEAD/OPTIONS answers after which the database or the sandbox differed (reported only)
    read_changes: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def record(self, failure: Failure) -> None:
        if failure.key in self.failures:
            self.failures[failure.key].count += 1
        else:
            self.failures[failure.key] = failure

    def summary(self) -> str:
        return (
            f"fuzz: {self.requests} requests over {len(self.routes)} routes "
            f"(seed {FUZZ_SEED}: FUZZ_SEED={FUZZ_SEED} replays its draws), "
            f"{self.server_errors} server errors, {self.state_changes} state changes on a 4xx, "
            f"{len(self.failures)} distinct failures, {self.seconds:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.timing.items()))
            + ")"
        )

    def report_markdown(self) -> str:
        lines = [
            f"# fuzz run, seed {FUZZ_SEED}",
            "",
            self.summary(),
            "",
            "statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())),
            "",
            "| route | answers |",
            "|---|---|",
        ]
        lines += [
            f"| {route} | " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + " |"
            for route, counts in sorted(self.by_route.items())
        ]
        lines += [
            "",
            "Reads that changed stored state (not failures by these rules; a page may sync an "
            "order or a subscription from Stripe):",
            "",
        ]
        lines += [
            f"- {route}: " + ", ".join(f"{table} x{n}" for table, n in sorted(tables.items()))
            for route, tables in sorted(self.read_changes.items())
        ]
        lines.append("")
        for f in sorted(self.failures.values(), key=lambda f: (f.endpoint, f.method, f.kind)):
            lines += [
                f"## {f.kind}: {f.method} {f.endpoint} as {f.identity} -> {f.status} (x{f.count})",
                "",
                "```",
                f.request[:1500],
                "",
                f.detail[-3000:],
                "```",
                "",
            ]
        return "\n".join(lines)


STATS = Stats()


# --------------------------------------------------------------------------- log capture
class ExceptionCapture(logging.Handler):
    """Keeps the tracebacks the app logs while answering (its 500 handler logs them)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record.getMessage() + "\n" + "".join(traceback.format_exception(*record.exc_info)))


def innermost_app_frame(trace: str) -> str:
    """``file:line`` of the deepest frame inside storefront/ (to tell failures apart)."""
    frames = re.findall(r'File "([^"]*storefront/[^"]*)", line (\d+)', trace)
    if not frames:
        return ""
    path, line = frames[-1]
    return f"{path.split('storefront/', 1)[1]}:{line}"


# --------------------------------------------------------------------------- fingerprints
def db_rows(app) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table's rows (volatile columns left out), in primary-key order."""
    out: dict[str, tuple[list[str], list[tuple]]] = {}
    with app.app_context(), db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            cols = [c for c in table.columns if not VOLATILE_COLUMN.match(c.name)]
            order = list(table.primary_key.columns) or cols
            rows = [tuple(row) for row in conn.execute(select(*cols).order_by(*order))]
            out[table.name] = ([c.name for c in cols], rows)
    return out


def describe_change(before: dict, after: dict) -> list[str]:
    """Which rows of which tables differ, and in which columns (for the failure report)."""
    lines = []
    for name in sorted(set(before) | set(after)):
        cols, old = before.get(name, ([], []))
        cols, new = after.get(name, (cols, []))
        if old == new:
            continue
        old_by_key = {row[0]: row for row in old}
        new_by_key = {row[0]: row for row in new}
        added = sorted(set(new_by_key) - set(old_by_key), key=repr)
        removed = sorted(set(old_by_key) - set(new_by_key), key=repr)
        changed = []
        for key in set(old_by_key) & set(new_by_key):
            if old_by_key[key] != new_by_key[key]:
                diff = [
                    f"{c}: {a!r} -> {b!r}"
                    for c, a, b in zip(cols, old_by_key[key], new_by_key[key], strict=True)
                    if a != b
                ]
                changed.append(f"row {key!r}: " + "; ".join(diff)[:300])
        lines.append(
            f"{name}: {len(added)} added {[new_by_key[k] for k in added][:2]!r:.300}, "
            f"{len(removed)} removed, {len(changed)} changed " + " | ".join(changed[:3])
        )
    return lines


class DatabaseFingerprint:
    """Every table's rows, re-read only when the database may have changed: SQLite's
    ``PRAGMA data_version`` (seen from a second connection) or PostgreSQL's WAL position move
    on every commit. Without such a marker the tables are read every time."""

    def __init__(self, app) -> None:
        self.app = app
        self.marker_value: object = None
        self.rows: dict | None = None
        self.value: str | None = None
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        self.sqlite = (
            sqlite3.connect(url[len("sqlite:///") :], check_same_thread=False, isolation_level=None)
            if url.startswith("sqlite:///")
            else None
        )

    def marker(self) -> object:
        if self.sqlite is not None:
            return self.sqlite.execute("PRAGMA data_version").fetchone()[0]
        try:
            with self.app.app_context(), db.engine.connect() as conn:
                from sqlalchemy import text

                return conn.execute(text("SELECT pg_current_wal_insert_lsn()")).scalar()
        except Exception:  # noqa: BLE001 - no marker: read every time
            return object()

    def __call__(self) -> str:
        marker = self.marker()
        if self.value is None or marker != self.marker_value:
            self.rows = db_rows(self.app)
            self.value = hashlib.sha256(repr(sorted(self.rows.items())).encode()).hexdigest()
            self.marker_value = self.marker()  # after the reads (they may have been a commit)
        return self.value

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()


class SandboxFingerprint:
    """The sandbox's objects (customers, payment intents, refunds, events, ...), hashed.

    A second SQLite connection to the sandbox's state file: ``PRAGMA data_version`` tells
    whether anyone committed since the last look, so the hash is only recomputed then."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        self.version: int | None = None
        self.value: tuple[int, str] | None = None

    def __call__(self) -> tuple[int, str]:
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.version or self.value is None:
            digest = hashlib.sha256()
            count = 0
            for object_id, data in self.conn.execute("SELECT id, data FROM objects ORDER BY id"):
                digest.update(object_id.encode())
                digest.update(data.encode())
                count += 1
            self.version, self.value = version, (count, digest.hexdigest())
        return self.value

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- identities
@dataclass
class Identity:
    name: str
    email: str | None
    cookie: str = ""
    token: str = ""

    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie} if self.cookie else {}


def _cookie_header(client) -> str:
    parts = []
    for name in ("session", "remember_token"):
        cookie = client.get_cookie(name)
        if cookie is not None:
            parts.append(f"{name}={cookie.value}")
    return "; ".join(parts)


def establish(app, identity: Identity) -> None:
    """Log in through the real form (with its CSRF token) and keep the cookie and a token."""
    client = app.test_client()
    page = client.get("/login")
    assert page.status_code == 200, page.status_code
    if identity.email is not None:
        with app.app_context():
            limiter.reset()  # the fuzzer may have throttled this account: not what we test here
        form = {
            "csrf_token": csrf_token_from(page.get_data(as_text=True)),
            "email": identity.email,
            "password": TEST_PASSWORD,
        }
        response = client.post("/login", data=form)
        if response.status_code not in (302, 303):  # a fuzzed password change went through
            with app.app_context():
                _restore_password(identity.email)
            response = client.post("/login", data=form)
        assert response.status_code in (302, 303), (identity.name, response.status_code)
        page = client.get("/account/")
        assert page.status_code == 200, (identity.name, page.status_code)
    identity.token = csrf_token_from(page.get_data(as_text=True))
    identity.cookie = _cookie_header(client)


def _restore_password(email: str) -> None:
    """A fuzzed password change may have succeeded: put the known password back."""
    from storefront.models import User

    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None and not user.check_password(TEST_PASSWORD):
        user.set_password(TEST_PASSWORD)
        db.session.commit()
    db.session.remove()


def still_signed_in(app, identity: Identity) -> bool:
    response = app.test_client(use_cookies=False).get("/account/", headers=identity.headers())
    return response.status_code == 200


# --------------------------------------------------------------------------- the seeded store
def _api_get(sandbox_url: str, path: str) -> dict:
    request = urllib.request.Request(sandbox_url + path, headers={"Authorization": "Bearer sk_test_sandbox"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@dataclass
class World:
    app: Any
    sandbox: Any  # tests.conftest.Sandbox
    sandbox_fp: SandboxFingerprint
    db_fp: DatabaseFingerprint
    identities: dict[str, Identity] = field(default_factory=dict)
    public_ids: list[str] = field(default_factory=list)  # orders, users, subscriptions
    own_ids: list[str] = field(default_factory=list)  # the fuzzing buyer's own
    lookup_keys: list[str] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    event_stripe_ids: list[str] = field(default_factory=list)
    stripe_ids: list[str] = field(default_factory=list)  # pi_, cs_, in_, sub_, cus_, pm_, price_
    emails: list[str] = field(default_factory=list)
    stripe_objects: list[dict] = field(default_factory=list)  # real objects, for webhook bodies
    kinds: dict[str, list[str]] = field(default_factory=dict)  # the real ids above, by kind
    last_fp: tuple | None = None
    client: Any = None  # a cookie-less test client: each request sends its identity
    capture: ExceptionCapture = field(default_factory=ExceptionCapture)

    def ids_for(self, arg: str) -> list[list[str]]:
        """Real ids that could fill ``<arg>``, grouped by kind (the name narrows the kinds)."""
        hint = arg.lower()
        for word, kind in (
            ("lookup", "lookup keys"),
            ("plan", "lookup keys"),
            ("session", "sessions"),
            ("payment_method", "cards"),
            ("card", "cards"),
        ):
            if word in hint and self.kinds.get(kind):
                return [self.kinds[kind]]
        return [ids for kind, ids in self.kinds.items() if ids and kind not in ("lookup keys", "sessions", "cards")]

    def fingerprint(self) -> tuple:
        """The database and the sandbox once the queue has done what the last request caused (a
        webhook acknowledged with 200 is processed by a worker afterwards: without waiting, that
        would land in the next request's before/after and look like its doing)."""
        settle()
        return self.db_fp(), self.sandbox_fp()

    def refresh_fingerprint(self) -> None:
        self.last_fp = self.fingerprint()


def _order_after(app, client, path: str, data: dict) -> str:
    response = client.post(path, data=data)
    assert response.status_code == 303, (path, response.status_code, response.get_data(as_text=True)[:300])
    from storefront.models import Order

    with app.app_context():
        public_id = db.session.scalar(select(Order.public_id).order_by(Order.id.desc()))
    assert public_id is not None
    return public_id


def seed_world(app, sandbox, sandbox_state_path: str) -> World:
    """Two buyers with pending, paid, Checkout and subscription orders, a saved card each,
    an admin, stored Stripe events and a points adjustment."""
    from storefront.models import Order, Price, StripeEvent, Subscription, User
    from storefront.services.accounts import create_or_promote_admin
    from storefront.services.catalog import sync_catalog

    from ..conftest import AuthActions

    app.config["WTF_CSRF_ENABLED"] = False
    app.config["STRIPE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    with app.app_context():
        sync_catalog()
        create_or_promote_admin(ADMIN_EMAIL, TEST_PASSWORD, "Ada Admin")
        db.session.remove()
    buyer, other = app.test_client(), app.test_client()
    for client, email, name in ((buyer, BUYER_EMAIL, "Bea Buyer"), (other, OTHER_EMAIL, "Otto Other")):
        assert AuthActions(client).signup(email=email, name=name).status_code in (302, 303)

    def paid(client, key: str) -> str:
        public_id = _order_after(app, client, f"/buy/{key}", {})
        with app.app_context():
            pi = db.session.scalar(select(Order.stripe_payment_intent_id).where(Order.public_id == public_id))
        assert pi is not None
        browser_confirm(sandbox, pi)
        client.get(f"/orders/{public_id}/status")  # the poll syncs it: paid
        return public_id

    own = [
        _order_after(app, buyer, "/buy/points_medium", {}),
        paid(buyer, "points_small"),
        _order_after(app, buyer, "/buy/points_large", {"method": "checkout"}),
    ]
    sub_order = _order_after(app, buyer, "/account/subscribe/starter_monthly", {"attempt": "fuzz-a1"})
    with app.app_context():
        pi = db.session.scalar(select(Order.stripe_payment_intent_id).where(Order.public_id == sub_order))
    assert pi is not None
    browser_confirm(sandbox, pi)
    buyer.get(f"/orders/{sub_order}/status")
    own.append(sub_order)
    theirs = [
        _order_after(app, other, "/buy/points_small", {}),
        paid(other, "points_medium"),
        _order_after(app, other, "/account/subscribe/advanced_monthly", {"attempt": "fuzz-b1"}),
    ]

    with app.app_context():
        customers = dict(db.session.execute(select(User.email, User.stripe_customer_id)).all())
    cards = [
        sandbox.stripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customers[email]}).id
        for email in (BUYER_EMAIL, OTHER_EMAIL)
    ]

    # admin: a points adjustment for the buyer
    admin = app.test_client()
    assert admin.post("/login", data={"email": ADMIN_EMAIL, "password": TEST_PASSWORD}).status_code in (302, 303)
    with app.app_context():
        users = dict(db.session.execute(select(User.email, User.public_id)).all())
    admin.post(
        f"/admin/buyers/{users[BUYER_EMAIL]}/points",
        data={"points": "25", "reason": "fuzz seed", "nonce": "fuzz-seed-1"},
    )

    # stored Stripe events: real objects, signed as Stripe signs them
    with app.app_context():
        orders = db.session.execute(
            select(
                Order.stripe_payment_intent_id,
                Order.stripe_checkout_session_id,
                Order.stripe_invoice_id,
                Order.stripe_subscription_id,
                Order.stripe_charge_id,
            )
        ).all()
        price_ids = list(db.session.scalars(select(Price.stripe_price_id)))
        lookup_keys = list(db.session.scalars(select(Price.lookup_key)))
    objects = []
    for pi_id, cs_id, in_id, sub_id, ch_id in orders:
        for kind, object_id in (
            ("payment_intents", pi_id),
            ("checkout/sessions", cs_id),
            ("invoices", in_id),
            ("subscriptions", sub_id),
            ("charges", ch_id),
        ):
            if object_id:
                objects.append(_api_get(sandbox.url, f"/v1/{kind}/{object_id}"))
    types = {
        "payment_intent": "payment_intent.succeeded",
        "checkout.session": "checkout.session.completed",
        "invoice": "invoice.paid",
        "subscription": "customer.subscription.updated",
        "charge": "charge.succeeded",
    }
    client = app.test_client()
    for n, obj in enumerate(objects[:8]):
        payload = json.dumps(
            {
                "id": f"evt_fuzzseed{n}",
                "object": "event",
                "type": types.get(str(obj.get("object")), "charge.succeeded"),
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": obj},
            }
        )
        client.post(
            "/api/stripe/webhook",
            data=payload,
            content_type="application/json",
            headers={"Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET)},
        )

    with app.app_context():
        event_rows = db.session.execute(select(StripeEvent.id, StripeEvent.stripe_id)).all()
        sub_ids = list(db.session.scalars(select(Subscription.public_id)))
        own_subs = list(
            db.session.scalars(
                select(Subscription.public_id)
                .join(User, User.id == Subscription.user_id)
                .where(User.email == BUYER_EMAIL)
            )
        )
        db.session.remove()

    world = World(
        app=app, sandbox=sandbox, sandbox_fp=SandboxFingerprint(sandbox_state_path), db_fp=DatabaseFingerprint(app)
    )
    world.own_ids = own + own_subs + [users[BUYER_EMAIL]] + [cards[0]]
    world.public_ids = own + theirs + sub_ids + list(users.values())
    world.lookup_keys = lookup_keys
    world.event_ids = [row[0] for row in event_rows]
    world.event_stripe_ids = [row[1] for row in event_rows]
    found: set[str] = {i for row in orders for i in row if i} | {p for p in price_ids if p}
    world.stripe_ids = sorted(found | set(cards) | {c for c in customers.values() if c})
    world.emails = [BUYER_EMAIL, OTHER_EMAIL, ADMIN_EMAIL]
    world.kinds = {
        "own orders": own,
        "other orders": theirs,
        "users": list(users.values()),
        "subscriptions": sub_ids,
        "cards": cards,
        "lookup keys": lookup_keys,
        "sessions": [i for i in world.stripe_ids if i.startswith("cs_")],
    }
    world.stripe_objects = objects

    app.config["WTF_CSRF_ENABLED"] = True
    world.identities = {
        "anonymous": Identity("anonymous", None),
        "buyer": Identity("buyer", BUYER_EMAIL),
        "admin": Identity("admin", ADMIN_EMAIL),
    }
    for identity in world.identities.values():
        establish(app, identity)
    world.refresh_fingerprint()
    return world
