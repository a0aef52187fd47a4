"""Test fixtures: the real app against a real sandbox over HTTP (no Stripe mocks).

* Database: ``TEST_DATABASE_URL`` if set (PostgreSQL: the schema is dropped and recreated once
  per session, tables truncated after each test), else a temporary SQLite file. The schema
  always comes from running the Alembic migrations, so they are tested too.
* Stripe: one ``SandboxServer`` per session on a free port, reset before each test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import TypeVar, Unpack

import pytest
import stripe
from sqlalchemy import create_engine, text
from stripe.params import CustomerListParams, PriceListParams, ProductListParams

from storefront import create_app
from storefront.extensions import cache, db, limiter

from . import mail_sink as mail_sink_module
from . import queue_worker

TEST_PASSWORD = "correct-horse-battery"
TX_GUARD_KEY = "test_transaction_guard"  # app.extensions key of the TransactionGuard
ADMIN_EMAIL = "boss@example.com"
#: random per test run: no key written in the repository signs anything, not even in tests
TEST_SECRET_KEY = secrets.token_hex(32)
#: apps made from make_config() queue into this run's own file, never the dev queue in instance/
TEST_QUEUE_FILE = str(Path(tempfile.mkdtemp(prefix="storefront-test-queue-")) / "queue.sqlite3")
#: this run's keys in the shared cache (a Redis named by REDIS_URL may serve other runs too)
TEST_CACHE_PREFIX = f"storefront-test-{secrets.token_hex(4)}:"

T = TypeVar("T")


def found(value: T | None, what: str = "value") -> T:
    """``value``, asserted to be there: a test that needs a row, a regex match or a header fails
    here saying what was missing (instead of on ``None.attribute``), and the type checker knows."""
    assert value is not None, f"{what} not found"
    return value


# --------------------------------------------------------------------------- sandbox
def _start_sandbox(state_path: Path):
    from stripe_sandbox.testing import SandboxServer

    server = SandboxServer(state_path=str(state_path), port=0)
    server.start()
    return server


class Sandbox:
    """Talks to the sandbox: control routes over plain HTTP, the API through the Stripe SDK."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.stripe = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": self.url}, max_network_retries=0)

    def control(self, method: str, path: str, payload: dict | None = None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def reset(self):
        return self.control("POST", "/_sandbox/reset", {})

    def fault(self, mode: str, count: int = 1, path_prefix: str = "/v1/", **extra):
        """``extra``: e.g. ``seconds=2`` for the ``delay`` and ``timeout`` modes."""
        return self.control(
            "POST", "/_sandbox/faults", {"mode": mode, "count": count, "path_prefix": path_prefix, **extra}
        )

    def clear_faults(self):
        return self.control("DELETE", "/_sandbox/faults")

    def customers(self, email: str | None = None) -> list:
        params: CustomerListParams = {"limit": 100}
        if email:
            params["email"] = email
        return list(self.stripe.v1.customers.list(params).data)

    def prices(self, **params: Unpack[PriceListParams]) -> list:
        params.setdefault("limit", 100)
        return list(self.stripe.v1.prices.list(params).auto_paging_iter())

    def products(self, **params: Unpack[ProductListParams]) -> list:
        params.setdefault("limit", 100)
        return list(self.stripe.v1.products.list(params).auto_paging_iter())


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory):
    server = _start_sandbox(tmp_path_factory.mktemp("sandbox") / "state.sqlite3")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _sandbox(sandbox_server):
    return Sandbox(sandbox_server.url)


@pytest.fixture
def sandbox(_sandbox):
    """The sandbox, reset to empty for this test."""
    _sandbox.reset()
    yield _sandbox
    # Best effort: a sandbox that cannot answer here fails the next test's reset() loudly anyway.
    with contextlib.suppress(Exception):
        _sandbox.clear_faults()


# --------------------------------------------------------------------------- database
def _prepare_database(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def make_config(database_url: str, sandbox_url: str, **extra) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "STRIPE_SECRET_KEY": "sk_test_sandbox",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_sandbox",
        "STRIPE_WEBHOOK_SECRET": None,
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_TIMEOUT": 5.0,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "CACHE_KEY_PREFIX": TEST_CACHE_PREFIX,
        "QUEUE_SQLITE_PATH": TEST_QUEUE_FILE,
        # every mail of the run goes to the test's own SMTP server (tests/mail_sink.py)
        "MAIL_SERVER": mail_sink_module.session_sink().host,
        "MAIL_PORT": mail_sink_module.session_sink().port,
        "STORE_URL": "http://localhost",
        # "action needed" mails go at once (the delay that spares a buyer still on the pay page is
        # tested with its own value: test_mail_notifications)
        "MAIL_ACTION_DELAY_SECONDS": 0.0,
    }
    config.update(extra)
    return config


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    return _prepare_database(tmp_path_factory)


@pytest.fixture(scope="session")
def app(database_url, sandbox_server, tmp_path_factory):
    queue_file = tmp_path_factory.mktemp("queue") / "queue.sqlite3"
    app = create_app(make_config(database_url, sandbox_server.url, QUEUE_SQLITE_PATH=str(queue_file)))
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    guard = TransactionGuard()  # on for every test that uses the app (see _isolate)
    guard.install(app)
    app.extensions[TX_GUARD_KEY] = guard
    yield app
    queue_worker.stop()
    guard.uninstall()
    with app.app_context():
        db.engine.dispose()


def _clean_tables(app):
    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))  # noqa: S608 -- names from our own metadata


@pytest.fixture(autouse=True)
def _isolate(request):
    """Every test starts with empty tables, fresh rate-limit counters and an empty shared cache,
    and fails if the app called Stripe inside a database transaction (the TransactionGuard, on
    for every test)."""
    guard = None
    if "app" in request.fixturenames:
        guard = request.getfixturevalue("app").extensions[TX_GUARD_KEY]
        guard.calls.clear()
        worker = request.getfixturevalue("worker")
    yield
    if guard is not None:
        app = request.getfixturevalue("app")
        if "live_server" in request.fixturenames:
            # the sandbox may be delivering a webhook, a browser polling, the worker processing
            # an event: let them finish and start nothing new while the tables are emptied
            with request.getfixturevalue("sandbox_server").sandbox.sender.paused():
                request.getfixturevalue("live_server").wait_idle()
                worker.wait_idle()
                _clean_tables(app)
        else:
            worker.wait_idle()
            _clean_tables(app)
        with app.app_context():
            limiter.reset()
        clear_cache(app)
        guard.assert_clean()


def clear_cache(app):
    """Empty the shared cache (saved-card lists, sync throttles), as if every entry had expired."""
    with app.app_context():
        cache.clear()


@pytest.fixture(scope="session")
def worker(app):
    """The real queue's consumer, in this process's threads (tests/queue_worker.py); started
    for every test that uses the app. ``queue_worker.settle()`` waits until it has done everything."""
    return queue_worker.start(app)


@pytest.fixture
def mail_sink(app):
    """The real SMTP server the app sends to (tests/mail_sink.py), emptied for this test."""
    sink = mail_sink_module.session_sink()
    sink.clear()
    yield sink
    sink.clear()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def client(app, sandbox):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def catalog(app, sandbox):
    """The default catalog loaded into the DB and synced to the sandbox."""
    from storefront.services.catalog import sync_catalog

    with app.app_context():
        sync_catalog()


# --------------------------------------------------------------------------- transaction guard
class TransactionGuard:
    """Records, for every request the app sends to Stripe (``StripeGateway.before_request``),
    whether the sending thread had a database transaction open at that moment, and whether that
    transaction had written (then it holds locks: the SQLite write lock, PostgreSQL row locks).

    ``problems()``: every call made while a transaction was open, read or write, on every path
    (``storefront.services.uow``: fetch, then apply; a read is ended before Stripe is asked)."""

    WRITES = ("INSERT", "UPDATE", "DELETE")

    def __init__(self):
        self.calls: list[dict] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def _open(self) -> dict:
        if not hasattr(self._local, "open"):
            self._local.open = {}
        return self._local.open

    # engine events (per thread: each thread has its own connection)
    def on_begin(self, conn):
        self._open()[id(conn)] = False

    def on_end(self, conn):
        self._open().pop(id(conn), None)

    def on_execute(self, conn, cursor, statement, parameters, context, executemany):
        open_ = self._open()
        if id(conn) in open_ and statement.lstrip().upper().startswith(self.WRITES):
            open_[id(conn)] = True

    # the gateway hook
    def before_request(self, fn, args):
        from flask import has_request_context, request

        open_ = self._open()
        call = {
            "call": getattr(fn, "__qualname__", repr(fn)),
            "args": args,
            "in_transaction": bool(open_),
            "wrote": any(open_.values()),
            "path": request.path if has_request_context() else None,
        }
        with self._lock:
            self.calls.append(call)

    def problems(self) -> list[dict]:
        return [c for c in self.calls if c["in_transaction"]]

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "Stripe called inside a database transaction: " + "; ".join(
            f"{p['call']}{p['args'][:1]} from {p['path'] or 'outside a request'} ({'wrote' if p['wrote'] else 'read'})"
            for p in problems
        )

    def install(self, app):
        from sqlalchemy import event

        from storefront.stripe_gateway import EXTENSION_KEY

        with app.app_context():
            engine = db.engine
        self._engine = engine
        event.listen(engine, "begin", self.on_begin)
        event.listen(engine, "commit", self.on_end)
        event.listen(engine, "rollback", self.on_end)
        event.listen(engine, "before_cursor_execute", self.on_execute)
        self._gateway = app.extensions[EXTENSION_KEY]
        self._gateway.before_request = self.before_request

    def uninstall(self):
        from sqlalchemy import event

        self._gateway.before_request = None
        event.remove(self._engine, "begin", self.on_begin)
        event.remove(self._engine, "commit", self.on_end)
        event.remove(self._engine, "rollback", self.on_end)
        event.remove(self._engine, "before_cursor_execute", self.on_execute)


@pytest.fixture
def tx_guard(app):
    """The app's TransactionGuard, for tests that look at the Stripe calls it recorded (it checks
    every test anyway: see ``_isolate``)."""
    return app.extensions[TX_GUARD_KEY]


# --------------------------------------------------------------------------- auth helper
class AuthActions:
    def __init__(self, client):
        self.client = client

    def signup(self, email="buyer@example.com", name="Bea Buyer", password=TEST_PASSWORD, confirm=None, **kw):
        return self.client.post(
            "/signup",
            data={
                "email": email,
                "name": name,
                "password": password,
                "confirm": password if confirm is None else confirm,
            },
            **kw,
        )

    def login(self, email="buyer@example.com", password=TEST_PASSWORD, **kw):
        return self.client.post("/login", data={"email": email, "password": password}, **kw)

    def logout(self):
        return self.client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in page"
    return match.group(1)


# --------------------------------------------------------------------------- live server
class LiveServer:
    """The app served over real HTTP on a free port, so the sandbox can deliver webhooks to it
    and a browser can load it."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._counting(app), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _counting(self, app):
        """``app``, counting the requests it is serving until their body has been sent (the
        app's teardown, which returns the database connection, has run by then). Werkzeug's
        server skips ``close()`` when the client hangs up first, so the end of the body counts
        too, once."""
        live = self

        class Tracked:
            def __init__(self, body):
                self.body, self.finished = body, False

            def __iter__(self):
                try:
                    yield from self.body
                finally:
                    self.finish()

            def close(self):
                try:
                    if hasattr(self.body, "close"):
                        self.body.close()
                finally:
                    self.finish()

            def finish(self):
                with live._idle:
                    if not self.finished:
                        self.finished = True
                        live._in_flight -= 1
                        live._idle.notify_all()

        def wsgi(environ, start_response):
            with self._idle:
                self._in_flight += 1
            tracked = Tracked(())
            try:
                tracked.body = app(environ, start_response)
            except BaseException:
                tracked.finish()
                raise
            return tracked

        return wsgi

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no request is being served: a webhook or a browser poll still running holds
        database locks that the per-test clean-up (PostgreSQL's TRUNCATE) would deadlock on."""
        with self._idle:
            assert self._idle.wait_for(lambda: self._in_flight == 0, timeout), (
                f"{self._in_flight} request(s) still running after {timeout} s"
            )

    def stop(self):
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def live_server(app):
    server = LiveServer(app)
    app.config["SERVER_NAME"] = None
    yield server
    server.stop()


@pytest.fixture
def webhooks(app, sandbox, live_server):
    """The store's webhook endpoint registered with the sandbox (as the run command does); the
    app verifies deliveries with its signing secret. Yields the secret."""
    from storefront.services.webhooks import register_endpoint

    with app.app_context():
        _endpoint, secret = register_endpoint(live_server.url + "/api/stripe/webhook")
    app.config["STRIPE_WEBHOOK_SECRET"] = secret
    yield secret
    app.config["STRIPE_WEBHOOK_SECRET"] = None


def sign_payload(payload: str | bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, computed as Stripe does (for forged/stale/replay tests);
    ``payload`` as bytes signs exactly those bytes (e.g. a body that is not UTF-8)."""
    import hashlib
    import hmac
    import time

    timestamp = int(time.time()) if timestamp is None else timestamp
    body = payload if isinstance(payload, bytes) else payload.encode()
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@pytest.fixture
def buyer(client, auth, catalog):
    """A signed-up, logged-in buyer (with a Stripe customer) on ``client``."""
    auth.signup()
    return client


@pytest.fixture
def admin(app, sandbox, catalog):
    """A logged-in admin on its own test client."""
    from storefront.services.accounts import create_or_promote_admin

    with app.app_context():
        create_or_promote_admin(ADMIN_EMAIL, TEST_PASSWORD, "Ada Admin")
    client = app.test_client()
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": TEST_PASSWORD})
    assert response.status_code in (302, 303)
    return client


def browser_confirm_setup(sandbox, client_secret: str, payment_method: str = "pm_card_visa"):
    """Confirm a SetupIntent as Stripe.js does from the buyer's browser, with the client secret our
    add-a-card page handed it (publishable key only). Returns the SetupIntent."""
    browser = stripe.StripeClient("pk_test_sandbox", base_addresses={"api": sandbox.url}, max_network_retries=0)
    # client_secret is the browser's (publishable-key) credential; the SDK's typed params leave it out.
    return browser.v1.setup_intents.confirm(
        client_secret.split("_secret_")[0],
        params={"client_secret": client_secret, "payment_method": payment_method},  # type: ignore[arg-type]
    )


def browser_confirm(sandbox, payment_intent_id: str | None, payment_method: str = "pm_card_visa"):
    """Confirm a PaymentIntent as Stripe.js does from the buyer's browser (publishable key +
    client secret). ``payment_intent_id`` may come straight from an order's optional column: it
    is asserted to be set."""
    assert payment_intent_id, "no PaymentIntent to confirm"
    secret_client = sandbox.stripe
    pi = secret_client.v1.payment_intents.retrieve(payment_intent_id)
    browser = stripe.StripeClient("pk_test_sandbox", base_addresses={"api": sandbox.url}, max_network_retries=0)
    try:
        # client_secret is the browser's (publishable-key) credential; the SDK's typed params,
        # written for secret-key callers, leave it out.
        return browser.v1.payment_intents.confirm(
            payment_intent_id,
            params={
                "client_secret": pi.client_secret,  # type: ignore[arg-type]
                "payment_method": payment_method,
            },
        )
    except stripe.CardError as err:
        return err
