"""The webhook outbox on the real queue: the view stores and acknowledges, a worker processes.

Every test runs Huey for real (tests/queue_worker.py: SQLite storage in a temp dir, a consumer
with two worker threads in this process); the killed-worker test runs ``flask worker`` as a
separate process and SIGKILLs it in the middle of an event.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select, update

from storefront import ConfigError, create_app, jobs
from storefront.extensions import db
from storefront.jobs.queue import init_app, make_huey
from storefront.models import Order, PointsEntry, StripeEvent, User
from storefront.models.base import utcnow
from storefront.services import fulfilment
from storefront.services import webhooks as service

from .conftest import TEST_SECRET_KEY, browser_confirm, found, make_config, sign_payload
from .queue_worker import Worker, queue_down, settle
from .test_subscriptions import advance, invoice_orders, subscribed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flush(sandbox):
    assert sandbox.control("POST", "/_sandbox/webhooks/flush", {"timeout": 15})["idle"]


def bought(buyer, app, lookup_key="points_medium") -> Order:
    assert buyer.post(f"/buy/{lookup_key}").status_code == 303
    with app.app_context():
        order = found(db.session.scalar(select(Order).order_by(Order.id.desc())), "order")
        db.session.expunge(order)
        return order


def events(app) -> list[StripeEvent]:
    with app.app_context():
        rows = db.session.scalars(select(StripeEvent).order_by(StripeEvent.id)).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def ledger(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(PointsEntry.key).order_by(PointsEntry.id)))


def balance(app) -> int:
    with app.app_context():
        return int(db.session.scalar(select(User.points_balance).order_by(User.id.desc())) or 0)


def order_status(app, order: Order) -> str:
    with app.app_context():
        return str(db.session.scalar(select(Order.status).where(Order.id == order.id)))


def post_event(client, event: dict, secret: str):
    payload = json.dumps(event, default=str)
    return client.post(
        "/api/stripe/webhook",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(payload, secret)},
    )


# --- acknowledged by the view, processed by the worker -----------------------------------------------


def test_the_view_acknowledges_and_the_worker_processes_each_event_once(app, buyer, sandbox, webhooks):
    """Every delivery arrives twice (the sandbox's duplicate fault): stored once each, processed
    once each (one attempt), the points credited once."""
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"duplicate": True})
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)
    settle()
    stored = events(app)
    assert {e.type for e in stored} >= {"payment_intent.succeeded", "charge.succeeded"}
    assert len({e.stripe_id for e in stored}) == len(stored)
    assert all(e.processed_at is not None and e.attempts == 1 and e.next_attempt_at is None for e in stored)
    deliveries = sandbox.control("GET", "/_sandbox/deliveries")["deliveries"]
    assert deliveries and all(d["last_status"] == 200 for d in deliveries)
    assert order_status(app, order) == "paid" and balance(app) == 550 and len(ledger(app)) == 1


# --- the queue down: stored, acknowledged, swept -------------------------------------------------------


def test_with_the_queue_down_deliveries_are_stored_acknowledged_and_swept_later(app, buyer, sandbox, webhooks):
    order = bought(buyer, app)
    with queue_down(app):
        browser_confirm(sandbox, order.stripe_payment_intent_id)
        flush(sandbox)  # delivered: every answer 200 although nothing could be queued
        deliveries = sandbox.control("GET", "/_sandbox/deliveries")["deliveries"]
        assert deliveries and all(d["last_status"] == 200 and d["attempts"] == 1 for d in deliveries)
        stored = events(app)
        assert stored and all(e.processed_at is None and e.next_attempt_at is not None for e in stored)
        assert order_status(app, order) == "pending" and balance(app) == 0
    with app.app_context():
        jobs.enqueue(jobs.sweep_events)  # what the workers' scheduler does every minute
    settle()
    assert all(e.processed_at is not None for e in events(app))
    assert order_status(app, order) == "paid" and balance(app) == 550 and len(ledger(app)) == 1


def test_the_status_page_shows_paid_within_one_poll_of_the_webhook_even_with_no_worker(app, buyer, sandbox, webhooks):
    """The stored event makes the order's Stripe sync due: the next poll asks Stripe, whatever
    the workers are doing (here: none can reach the queue). Then the sweeper credits nothing
    more."""
    order = bought(buyer, app)
    first = buyer.get(f"/orders/{order.public_id}/status").get_json()  # syncs: not paid yet
    assert first["order_status"] == "pending"
    with queue_down(app):
        browser_confirm(sandbox, order.stripe_payment_intent_id)
        flush(sandbox)
        assert order_status(app, order) == "pending"  # nothing processed it
        poll = buyer.get(f"/orders/{order.public_id}/status").get_json()  # within the sync interval
        assert poll["order_status"] == "paid"
    with app.app_context():
        assert service.process_due().startswith(f"{len(events(app))} processed")
    assert balance(app) == 550 and len(ledger(app)) == 1


# --- failures: backoff, giving up, replay --------------------------------------------------------------


def test_retry_delays_grow_exponentially_up_to_an_hour_and_stop_after_the_last_attempt(app):
    with app.app_context():
        delays = [service.retry_delay(n) for n in range(1, 10)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, None, None]
    with app.app_context():
        app.config["WEBHOOK_MAX_ATTEMPTS"] = 20
        try:
            assert service.retry_delay(8) == 3600 and service.retry_delay(12) == 3600
        finally:
            app.config["WEBHOOK_MAX_ATTEMPTS"] = 8


def test_a_failing_event_is_retried_with_backoff_then_shows_failed_and_a_replay_fixes_it(
    app, admin, buyer, sandbox, webhooks, monkeypatch
):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 3)
    order = bought(buyer, app)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    event = sandbox.stripe.v1.events.list(params={"type": "payment_intent.succeeded", "limit": 1}).data[0]
    real = fulfilment.apply_payment_intent

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(fulfilment, "apply_payment_intent", broken)
    assert post_event(buyer, event.to_dict(), webhooks).status_code == 200
    settle()
    (row,) = events(app)
    assert row.attempts == 1 and row.processed_at is None and "database hiccup" in (row.error or "")
    wait = found(row.next_attempt_at, "next attempt") - utcnow()
    assert timedelta(seconds=25) < wait <= timedelta(seconds=30)  # the first backoff: 30 s
    with app.app_context():
        assert service.process_due() == "0 processed, 0 failed"  # not due yet
    for attempts in (2, 3):  # time passes: each retry comes due, and fails again
        with app.app_context():
            db.session.execute(update(StripeEvent).values(next_attempt_at=utcnow()))
            db.session.commit()
            assert service.process_due() == "0 processed, 1 failed"
        (row,) = events(app)
        assert row.attempts == attempts
    assert row.next_attempt_at is None and row.processed_at is None  # given up after 3 attempts
    with app.app_context():
        assert service.process_due() == "0 processed, 0 failed"
    listing = admin.get("/admin/events?problem=1").get_data(as_text=True)
    assert event.id in listing and "database hiccup" in listing
    page = admin.get(f"/admin/events/{row.id}").get_data(as_text=True)
    assert '<span class="error">failed</span>: no more automatic attempts' in page
    monkeypatch.setattr(fulfilment, "apply_payment_intent", real)
    assert admin.post(f"/admin/events/{row.id}/replay").status_code == 302
    (row,) = events(app)
    assert row.processed_at is not None and row.error is None and row.attempts == 4
    assert order_status(app, order) == "paid" and balance(app) == 550


# --- Redis: the production backend -------------------------------------------------------------------


def test_a_queue_url_that_is_not_redis_is_refused_at_start():
    with pytest.raises(ConfigError, match="QUEUE_URL must be a redis:// URL"):
        create_app(make_config("sqlite://", "http://127.0.0.1:9", QUEUE_URL="amqp://broker:5672"))


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.parametrize("storage", ["sqlite", "redis"])
def test_waiting_payment_events_run_before_the_mail_queued_earlier(tmp_path, storage):
    """Task priorities are kept by both storages: after a burst, a worker takes the payments'
    events first and the mails (queued earlier, by events already processed) after them."""
    if storage == "redis":
        try:
            redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping()
        except redis.RedisError:
            pytest.skip(f"no Redis at {TEST_REDIS_URL}")
        settings = {"QUEUE_URL": TEST_REDIS_URL, "QUEUE_NAME": f"storefront-test-{secrets.token_hex(4)}"}
    else:
        settings = {"QUEUE_SQLITE_PATH": str(tmp_path / "queue.sqlite3")}
    huey = make_huey(settings)
    queue = init_app(Flask(__name__), huey)
    try:
        queue.tasks["storefront.jobs.tasks.send_mail"](1)
        queue.tasks["storefront.jobs.tasks.request_password_reset"]("someone@example.com")
        queue.tasks["storefront.jobs.tasks.process_event"](7)
        queue.tasks["storefront.jobs.tasks.process_event"](8)
        taken = [huey.dequeue() for _ in range(4)]
        assert [(task.name.rsplit(".", 1)[1], task.args) for task in taken] == [
            ("process_event", (7,)),
            ("process_event", (8,)),
            ("send_mail", (1,)),
            ("request_password_reset", ("someone@example.com",)),
        ]
    finally:
        huey.storage.flush_queue()


def test_on_redis_the_view_queues_and_a_worker_of_another_app_processes(
    app, buyer, sandbox, database_url, sandbox_server
):
    """With ``QUEUE_URL`` a Redis, the store that received the webhook queues into Redis and
    a worker made from another app (another machine) processes the event. Skipped without a
    Redis at ``TEST_REDIS_URL``; the queue's name is this test's own."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {TEST_REDIS_URL}")
    secret = "whsec_redis_queue_test"
    settings = {"QUEUE_URL": TEST_REDIS_URL, "QUEUE_NAME": f"storefront-test-{secrets.token_hex(4)}"}
    web = create_app(make_config(database_url, sandbox_server.url, STRIPE_WEBHOOK_SECRET=secret, **settings))
    machine = create_app(make_config(database_url, sandbox_server.url, **settings))
    order = bought(buyer, app)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    event = sandbox.stripe.v1.events.list(params={"type": "payment_intent.succeeded", "limit": 1}).data[0]
    assert post_event(web.test_client(), event.to_dict(), secret).status_code == 200
    with web.app_context():
        assert type(jobs.get_huey().storage).__name__ == "PriorityRedisStorage" and jobs.queue_depth() == 1
        jobs.ping()
    worker = Worker(machine, workers=1)
    try:
        worker.settle()
    finally:
        worker.stop()
        jobs.get_huey(machine).storage.flush_queue()
        for one in (web, machine):
            with one.app_context():
                db.engine.dispose()
    assert order_status(app, order) == "paid" and balance(app) == 550
    (row,) = events(app)
    assert row.processed_at is not None and row.attempts == 1


# --- a worker killed in the middle of an event ------------------------------------------------------------


def _worker_process(database_url: str, sandbox_url: str, queue_file: str, log: Path) -> subprocess.Popen:
    """``flask worker`` (one thread, no periodic tasks) on the test database and ``queue_file``,
    its output in ``log``."""
    env = {
        **os.environ,
        "FLASK_APP": "storefront",
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_SECRET_KEY": "sk_test_sandbox",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_sandbox",
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_TIMEOUT": "60",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "QUEUE_SQLITE_PATH": queue_file,
        "WEBHOOK_LEASE_SECONDS": "1",
    }
    env.pop("REDIS_URL", None)
    env.pop("QUEUE_URL", None)
    with log.open("w") as output:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "worker", "--workers", "1", "--no-periodic"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _wait_for(condition, what: str, logs, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {path.name}:\n" + path.read_text()[-3000:] for path in logs if path.exists())
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.05)


def test_a_worker_killed_mid_event_leaves_it_to_the_next_worker_and_credits_once(
    app, buyer, sandbox, database_url, sandbox_server, tmp_path
):
    """A renewal's invoice.paid reaches a ``flask worker`` process, which is SIGKILLed while
    its Stripe fetch hangs (the sandbox's delay fault); once the claim's lease has run out the
    sweeper hands the event to a new worker process: the renewal is credited, once."""
    subscribed(app, buyer, sandbox)  # no webhook endpoint: the store hears nothing by itself
    advance(sandbox)  # the renewal is paid at Stripe
    renewal = sandbox.stripe.v1.events.list(params={"type": "invoice.paid", "limit": 1}).data[0]
    assert balance(app) == 500 and len(invoice_orders(app)) == 1

    secret = "whsec_killed_worker_test"
    queue_file = str(tmp_path / "queue.sqlite3")  # this test's own queue: no in-process worker
    store = create_app(
        make_config(
            database_url,
            sandbox_server.url,
            QUEUE_SQLITE_PATH=queue_file,
            STRIPE_WEBHOOK_SECRET=secret,
            WEBHOOK_LEASE_SECONDS=1,
        )
    )
    assert post_event(store.test_client(), renewal.to_dict(), secret).status_code == 200
    invoice_id = renewal.data.object.id
    sandbox.fault("delay", count=1, path_prefix=f"/v1/invoices/{invoice_id}", seconds=30)

    def row() -> StripeEvent:
        (found_row,) = events(app)
        return found_row

    logs = [tmp_path / "first-worker.log", tmp_path / "second-worker.log"]
    first = _worker_process(database_url, sandbox_server.url, queue_file, logs[0])
    second = None
    try:
        _wait_for(lambda: row().attempts == 1, "the first worker to claim the event", logs)
        time.sleep(0.5)  # inside its 30 s fetch
        assert first.poll() is None
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert row().processed_at is None and balance(app) == 500  # nothing applied
        time.sleep(1.2)  # the lease runs out
        with store.app_context():
            jobs.enqueue(jobs.sweep_events)
        second = _worker_process(database_url, sandbox_server.url, queue_file, logs[1])
        _wait_for(lambda: row().processed_at is not None, "the second worker to process the event", logs)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        with store.app_context():
            db.engine.dispose()
    assert row().attempts == 2 and row().error is None
    assert len(invoice_orders(app)) == 2 and balance(app) == 1000
    with app.app_context():
        credits = db.session.scalar(
            select(func.count(PointsEntry.id)).where(PointsEntry.key == f"invoice:{invoice_id}")
        )
    assert credits == 1
