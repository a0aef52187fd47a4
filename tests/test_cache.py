"""The shared cache (storefront/cache.py): saved-card lists and the subscription-sync throttle
live in Flask-Caching, so with Redis every worker sees one cache and a change made on one worker
shows on every other at once; with Redis down the pages still answer from Stripe.

The cross-worker tests run two app instances (two "workers") on the real Redis at
``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``, a spare database), under a key prefix of
their own which they delete afterwards; they are skipped when no Redis answers there."""

from __future__ import annotations

import os
import re
import secrets

import pytest
import redis

from storefront import create_app
from storefront.cache import Shared, due
from storefront.config import load_settings

from .conftest import TEST_PASSWORD, browser_confirm_setup, found, make_config

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_prefix():
    """A key prefix in the test Redis, its keys deleted afterwards (nothing else is touched)."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {TEST_REDIS_URL}")
    prefix = f"storefront-test-{secrets.token_hex(4)}:"
    yield prefix
    keys = client.keys(prefix + "*")
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def workers(app, catalog, database_url, sandbox_server, redis_prefix):
    """Two app instances on one database, one sandbox and one Redis: two gunicorn workers."""
    config = make_config(
        database_url, sandbox_server.url, CACHE_REDIS_URL=TEST_REDIS_URL, CACHE_KEY_PREFIX=redis_prefix
    )
    return create_app(config), create_app(config)


def signed_in(worker, *, signup: bool = False):
    client = worker.test_client()
    form = {"email": "buyer@example.com", "password": TEST_PASSWORD}
    if signup:
        form |= {"name": "Bea Buyer", "confirm": TEST_PASSWORD}
    assert client.post("/signup" if signup else "/login", data=form).status_code == 302
    return client


def add_card(client, sandbox, payment_method: str) -> None:
    """The add-a-card flow: our page's SetupIntent, confirmed as Stripe.js does, then our return URL."""
    page = client.get("/account/cards/new").get_data(as_text=True)
    secret = found(re.search(r'data-client-secret="(seti_[^"]+)"', page), "SetupIntent secret").group(1)
    seti_id = secret.split("_secret_")[0]
    browser_confirm_setup(sandbox, secret, payment_method)
    assert client.get(f"/account/cards/added?setup_intent={seti_id}").status_code == 303


def card_rows(client) -> dict[str, bool]:
    """The cards page as {card id: is default}."""
    page = client.get("/account/cards").get_data(as_text=True)
    return {
        m.group(1): "data-default" in m.group(2) for m in re.finditer(r'<li data-card="([^"]+)">(.*?)</li>', page, re.S)
    }


def stripe_responses(sandbox) -> int:
    return sandbox.control("GET", "/_sandbox/conformance")["responses"]


def test_a_card_added_defaulted_or_removed_on_one_worker_shows_on_the_other_at_once(workers, sandbox):
    worker_a, worker_b = workers
    on_a, on_b = signed_in(worker_a, signup=True), signed_in(worker_b)
    assert card_rows(on_b) == {}  # worker B now holds the empty list for 30 s

    add_card(on_a, sandbox, "pm_card_visa")
    (visa,) = card_rows(on_b)
    assert card_rows(on_b) == {visa: True}  # the first card is the default

    add_card(on_a, sandbox, "pm_card_mastercard")
    assert len(card_rows(on_b)) == 2
    mastercard = next(card for card in card_rows(on_b) if card != visa)

    assert on_a.post(f"/account/cards/{mastercard}/default").status_code == 303
    assert card_rows(on_b) == {mastercard: True, visa: False}

    assert on_a.post(f"/account/cards/{visa}/remove").status_code == 303
    assert card_rows(on_b) == {mastercard: True}


def test_one_worker_fills_the_cache_for_every_other(workers, sandbox):
    worker_a, worker_b = workers
    on_a, on_b = signed_in(worker_a, signup=True), signed_in(worker_b)
    add_card(on_a, sandbox, "pm_card_visa")  # worker A keeps the fresh list it read after adding
    before = stripe_responses(sandbox)
    assert len(card_rows(on_b)) == 1 and card_rows(on_a) == card_rows(on_b)
    assert stripe_responses(sandbox) == before  # neither worker asked Stripe again


def test_the_subscription_sync_is_due_once_for_all_workers(workers):
    worker_a, worker_b = workers
    with worker_a.app_context():
        assert due("subscription-sync:cus_shared", 10)
    with worker_b.app_context():
        assert not due("subscription-sync:cus_shared", 10)  # worker A synced a moment ago
        assert due("subscription-sync:cus_shared", 10, force=True)
    with worker_a.app_context():
        assert not due("subscription-sync:cus_shared", 10)


def test_a_list_fetched_before_a_change_is_not_kept_as_current(app):
    """Worker A reads (a miss) and asks Stripe; meanwhile worker B changes the cards and
    invalidates; A's late store must not become the list everyone sees."""
    lists = Shared("race", 30)
    with app.app_context():
        miss = lists.read("cus_1")
        assert miss.value is None
        lists.invalidate("cus_1")  # the change, while the old list was being fetched
        lists.store("cus_1", ["old"], miss)
        assert lists.read("cus_1").value is None
        fresh = lists.read("cus_1")
        lists.store("cus_1", ["new"], fresh)
        assert lists.read("cus_1").value == ["new"]


def test_redis_down_is_a_miss_and_the_pages_still_answer(app, catalog, database_url, sandbox_server, sandbox):
    """Nothing listens at the cache's address: the cards page asks Stripe, changes still work,
    and the subscription sync runs (due) instead of being skipped."""
    worker = create_app(make_config(database_url, sandbox_server.url, CACHE_REDIS_URL="redis://127.0.0.1:1/0"))
    client = signed_in(worker, signup=True)
    add_card(client, sandbox, "pm_card_visa")
    (visa,) = card_rows(client)
    assert card_rows(client) == {visa: True}
    assert client.get("/account/billing").status_code == 200
    with worker.app_context():
        assert due("subscription-sync:cus_any", 10) and due("subscription-sync:cus_any", 10)


def test_the_in_process_default_and_redis_from_the_environment(tmp_path):
    def cache_type(**environ: str) -> str:
        return load_settings(environ=environ, instance_path=str(tmp_path))["CACHE_TYPE"]

    assert cache_type() == "SimpleCache"
    assert cache_type(REDIS_URL="redis://cache.internal:6379/0") == "RedisCache"
    settings = load_settings(
        environ={"REDIS_URL": "redis://queue:6379/0", "CACHE_REDIS_URL": "redis://cache:6379/2"},
        instance_path=str(tmp_path),
    )
    assert settings["CACHE_REDIS_URL"] == "redis://cache:6379/2"  # the cache's own setting wins
