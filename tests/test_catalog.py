import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, select

from storefront.extensions import db
from storefront.models import Price, Product
from storefront.services.catalog import CatalogError, parse_catalog
from storefront.web.helpers import format_money

from .conftest import found

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "storefront" / "catalog.toml"

EXPECTED = {
    "starter_monthly": ("Starter Plan", "$5.00", "/ month", "500 points each paid month"),
    "advanced_monthly": ("Advanced Plan", "$15.00", "/ month", "2,000 points each paid month"),
    "professional_monthly": ("Professional Plan", "$99.00", "/ month", "15,000 points each paid month"),
    "lifetime": ("Lifetime Plan", "$400.00", "once", "Professional features forever + 50,000 points"),
    "points_small": ("Small Points Pack", "$2.00", "", "200 points"),
    "points_medium": ("Medium Points Pack", "$5.00", "", "550 points"),
    "points_large": ("Large Points Pack", "$12.00", "", "1,400 points"),
}


def test_default_catalog_file_has_the_seven_products():
    entries = parse_catalog(DEFAULT_CATALOG.read_text())
    assert {e.lookup_key: e.amount for e in entries} == {
        "starter_monthly": 500,
        "advanced_monthly": 1500,
        "professional_monthly": 9900,
        "lifetime": 40000,
        "points_small": 200,
        "points_medium": 500,
        "points_large": 1200,
    }
    assert all(e.currency == "usd" for e in entries)
    assert {e.lookup_key for e in entries if e.kind == "subscription"} == {
        "starter_monthly",
        "advanced_monthly",
        "professional_monthly",
    }


def test_sync_creates_products_and_prices_in_db_and_stripe(app, runner, sandbox):
    result = runner.invoke(args=["catalog", "sync"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        prices = db.session.scalars(select(Price)).all()
        assert len(prices) == 7 and all(p.stripe_price_id for p in prices)
        assert all(p.product.stripe_product_id for p in prices)
    remote = {p.lookup_key: p for p in sandbox.prices(active=True)}
    assert set(remote) == set(EXPECTED)
    assert remote["professional_monthly"].unit_amount == 9900
    assert remote["professional_monthly"].recurring.interval == "month"
    assert remote["lifetime"].recurring is None and remote["lifetime"].type == "one_time"
    assert len(sandbox.products()) == 7


def test_sync_twice_creates_nothing_new(app, runner, sandbox):
    assert runner.invoke(args=["catalog", "sync"]).exit_code == 0
    before_prices = sorted(p.id for p in sandbox.prices())
    before_products = sorted(p.id for p in sandbox.products())
    result = runner.invoke(args=["catalog", "sync"])
    assert result.exit_code == 0, result.output
    assert "Stripe (sandbox): 0 created, 0 updated, 0 archived, 7 unchanged" in result.output
    assert sorted(p.id for p in sandbox.prices()) == before_prices
    assert sorted(p.id for p in sandbox.products()) == before_products


def test_changed_amount_creates_new_price_and_archives_old(app, runner, sandbox, tmp_path):
    assert runner.invoke(args=["catalog", "sync"]).exit_code == 0
    old = {p.lookup_key: p for p in sandbox.prices(active=True)}["points_small"]
    changed = tmp_path / "catalog.toml"
    changed.write_text(
        DEFAULT_CATALOG.read_text().replace(
            'lookup_key = "points_small", amount = 200', 'lookup_key = "points_small", amount = 250'
        )
    )
    result = runner.invoke(args=["catalog", "sync", "--file", str(changed)])
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output and "1 archived" in result.output
    current = sandbox.stripe.v1.prices.list({"lookup_keys": ["points_small"]}).data
    assert len(current) == 1 and current[0].unit_amount == 250 and current[0].active
    assert current[0].id != old.id and current[0].product == old.product
    old_now = sandbox.stripe.v1.prices.retrieve(old.id)
    assert old_now.active is False and old_now.lookup_key is None
    with app.app_context():
        price = found(db.session.scalar(select(Price).where(Price.lookup_key == "points_small")), "points_small")
        assert price.unit_amount == 250 and price.stripe_price_id == current[0].id
    # and again: nothing new
    result = runner.invoke(args=["catalog", "sync", "--file", str(changed)])
    assert "0 created, 0 updated, 0 archived, 7 unchanged" in result.output
    # back to the old amount: a third price (the archived one is never resurrected by replay)
    result = runner.invoke(args=["catalog", "sync"])
    assert result.exit_code == 0
    now = sandbox.stripe.v1.prices.list({"lookup_keys": ["points_small"]}).data
    assert now[0].unit_amount == 200 and now[0].id not in (old.id, current[0].id) and now[0].active


def test_changed_name_updates_the_stripe_product(app, runner, sandbox, tmp_path):
    assert runner.invoke(args=["catalog", "sync"]).exit_code == 0
    changed = tmp_path / "catalog.toml"
    changed.write_text(DEFAULT_CATALOG.read_text().replace('"Large Points Pack"', '"Huge Points Pack"'))
    result = runner.invoke(args=["catalog", "sync", "--file", str(changed)])
    assert "1 updated" in result.output
    names = {p.name for p in sandbox.products()}
    assert "Huge Points Pack" in names and "Large Points Pack" not in names


def test_removed_product_is_deactivated_and_archived(app, runner, sandbox, tmp_path):
    assert runner.invoke(args=["catalog", "sync"]).exit_code == 0
    text = DEFAULT_CATALOG.read_text()
    start = text.index("[products.points_large]")
    smaller = tmp_path / "catalog.toml"
    smaller.write_text(text[:start])
    result = runner.invoke(args=["catalog", "sync", "--file", str(smaller)])
    assert result.exit_code == 0, result.output
    remote = {p.lookup_key: p for p in sandbox.prices(active=True)}
    assert "points_large" not in remote and len(remote) == 6
    with app.app_context():
        product = found(db.session.scalar(select(Product).where(Product.key == "points_large")), "points_large")
        assert product.active is False
    assert "Large Points Pack" not in app.test_client().get("/").get_data(as_text=True)


def test_sync_with_stripe_down_fails_clearly_and_recovers(app, runner, sandbox):
    sandbox.fault("error", count=1, path_prefix="/v1/prices")
    result = runner.invoke(args=["catalog", "sync"])
    assert result.exit_code != 0
    assert "Stripe sync failed" in result.output
    result = runner.invoke(args=["catalog", "sync"])
    assert result.exit_code == 0, result.output
    assert len(sandbox.prices(active=True)) == 7


@pytest.mark.parametrize(
    "mutation,message",
    [
        (("amount = 200", "amount = 2.5"), "positive integer"),
        (('currency = "usd", interval = "month"', 'currency = "usd"'), "needs price.interval"),
        (('category = "points"', 'category = "pointz"'), "category"),
        (("[products.points_small]", "[products.Points-Small]"), "lower-case"),
    ],
)
def test_invalid_catalog_is_refused(mutation: tuple[str, str], message: str):
    with pytest.raises(CatalogError, match=message):
        parse_catalog(DEFAULT_CATALOG.read_text().replace(*mutation, 1))


def test_home_page_lists_all_seven_with_prices(app, client, catalog):
    html = client.get("/").get_data(as_text=True)
    for lookup_key, (name, amount, per, grants) in EXPECTED.items():
        block = re.search(rf'<article[^>]*offer-{lookup_key}".*?</article>', html, re.S)
        assert block, lookup_key
        text = re.sub(r"\s+", " ", block.group(0))
        assert name in text and amount in text and per in text and grants in text, (lookup_key, text)
        assert f'action="/buy/{lookup_key}"' in text
    assert html.index("Starter Plan") < html.index("Lifetime Plan") < html.index("Small Points Pack")


def count_queries(app):
    """The statements this thread runs (the test client's requests run here; the queue's worker
    threads, sending a sign-up's mail, are not the page's)."""
    statements = []
    with app.app_context():
        engine = db.engine
    thread = threading.get_ident()

    def before(conn, cursor, statement, *args):
        if threading.get_ident() == thread:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    return statements, lambda: event.remove(engine, "before_cursor_execute", before)


def test_home_page_makes_one_query_for_anonymous_and_logged_in(app, client, auth, catalog):
    statements, stop = count_queries(app)
    try:
        assert client.get("/").status_code == 200
        assert len(statements) == 1, statements
        auth.signup(email="q@example.com")
        statements.clear()
        assert client.get("/").status_code == 200
        # the logged-in user's row (Flask-Login) + the catalog
        assert len(statements) == 2, statements
    finally:
        stop()


def test_buy_requires_login_and_known_product(client, auth, catalog):
    response = client.post("/buy/points_small")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    auth.signup(email="b@example.com")
    assert client.post("/buy/nope").status_code == 404
    page = client.get("/buy/lifetime").get_data(as_text=True)
    assert "Lifetime Plan" in page and "$400.00" in page
    response = client.post("/buy/lifetime")
    assert response.status_code == 303 and response.headers["Location"].endswith("/pay")


@pytest.mark.parametrize(
    "amount,currency,expected",
    [
        (500, "usd", "$5.00"),
        (40000, "usd", "$400.00"),
        (123456789, "usd", "$1,234,567.89"),
        (5, "usd", "$0.05"),
        (1200, "eur", "€12.00"),
        (500, "jpy", "¥500"),
        (1999, "chf", "19.99 CHF"),
        (-250, "usd", "-$2.50"),
        (0, "USD", "$0.00"),
    ],
)
def test_money_filter(amount, currency, expected):
    assert format_money(amount, currency) == expected


def test_anonymous_buy_button_goes_to_login_then_review(app, client, auth, catalog):
    html = client.get("/").get_data(as_text=True)
    assert 'method="get" action="/buy/points_medium"' in html  # no session needed to browse
    response = client.get("/buy/points_medium")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fbuy%2Fpoints_medium"
    auth.signup(email="rev@example.com")
    auth.logout()
    response = client.post(
        "/login?next=/buy/points_medium", data={"email": "rev@example.com", "password": "correct-horse-battery"}
    )
    assert response.headers["Location"] == "/buy/points_medium"
    page = client.get("/buy/points_medium").get_data(as_text=True)
    assert "Medium Points Pack" in page and 'method="post" action="/buy/points_medium"' in page
    # signed in too, the home page buttons open the product page; only its form POSTs
    assert 'method="get" action="/buy/points_medium"' in client.get("/").get_data(as_text=True)


def test_anonymous_catalog_cache_serves_same_bytes_and_sees_changes(app, runner, sandbox, tmp_path):
    assert runner.invoke(args=["catalog", "sync", "--db-only"]).exit_code == 0
    client = app.test_client(use_cookies=False)
    first = client.get("/")
    statements, stop = count_queries(app)
    try:
        second = client.get("/")
        assert len(statements) == 1  # the fast path still runs the catalog query
    finally:
        stop()
    assert second.data == first.data and second.headers["Content-Type"].startswith("text/html")
    assert client.head("/").status_code == 200
    changed = tmp_path / "catalog.toml"
    changed.write_text(DEFAULT_CATALOG.read_text().replace("amount = 1200", "amount = 1300"))
    assert runner.invoke(args=["catalog", "sync", "--db-only", "--file", str(changed)]).exit_code == 0
    html = client.get("/").get_data(as_text=True)
    assert "$13.00" in html and "$12.00" not in html
