"""Operations: /healthz, /readyz, /metrics (token or allow-list, multiprocess mode) and the
structured request and job logs, against the real app and the sandbox."""

from __future__ import annotations

import io
import json
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from storefront import create_app, log_setup, metrics
from storefront.extensions import db
from storefront.models import Order

from .conftest import TEST_PASSWORD, TEST_SECRET_KEY, AuthActions, browser_confirm, found, make_config
from .queue_worker import settle

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-for-tests-0123456789"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """``/metrics`` read as {(sample name, sorted labels): value}."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.get_data(as_text=True))


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(figures: dict, name: str, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def ops_app(database_url, sandbox_server, sandbox):
    """An app of its own: readiness asks Stripe on every probe (no cache)."""
    return create_app(make_config(database_url, sandbox_server.url, READYZ_STRIPE_CACHE_SECONDS=0))


def _pay(app, client) -> Order:
    """Buy a points pack, confirm it as the browser would, let the status poll sync it."""
    assert client.post("/buy/points_medium").status_code == 303
    with app.app_context():
        order = found(db.session.scalar(select(Order).order_by(Order.id.desc())), "order")
        db.session.expunge(order)
    return order


def _settle(app, client, sandbox, order: Order, card: str = "4242424242424242") -> None:
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    with app.app_context():  # make the poll's sync due now
        db.session.execute(update(Order).values(synced_at=None))
        db.session.commit()
    assert client.get(f"/orders/{order.public_id}/status?card={card}").get_json()["status"] == "paid"


# --- /healthz ---------------------------------------------------------------------------------------


def test_healthz_answers_without_the_database(database_url, sandbox_server):
    app = create_app(make_config("postgresql+psycopg://nobody@127.0.0.1:9/none", sandbox_server.url))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert len(response.headers["X-Request-Id"]) == 32


def test_a_sane_request_id_is_echoed_and_a_hostile_one_replaced(client):
    assert client.get("/healthz", headers={"X-Request-Id": "lb-1234abcd"}).headers["X-Request-Id"] == "lb-1234abcd"
    hostile = client.get("/healthz", headers={"X-Request-Id": "<script>alert(1)</script>" + "z" * 200})
    assert hostile.headers["X-Request-Id"] != "lb-1234abcd" and len(hostile.headers["X-Request-Id"]) == 32


# --- /readyz ----------------------------------------------------------------------------------------


def test_readyz_is_ready_when_the_database_and_stripe_answer(ops_app):
    response = ops_app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "queue": "ok", "stripe": "ok"}}


@pytest.mark.parametrize("mode", ["error", "rate_limit"])
def test_readyz_names_stripe_when_stripe_fails(ops_app, sandbox, mode):
    sandbox.fault(mode, count=5)
    response = ops_app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["stripe"] == "error: StripeUnavailable" and checks["database"] == "ok"
    sandbox.clear_faults()
    assert ops_app.test_client().get("/readyz").status_code == 200


def test_readyz_gives_up_on_a_hanging_stripe_quickly(ops_app, sandbox):
    sandbox.fault("timeout", count=1, seconds=6)
    response = ops_app.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["stripe"] == "error: StripeUnavailable"


def test_readyz_keeps_stripes_answer_for_a_few_seconds(database_url, sandbox_server, sandbox):
    app = create_app(make_config(database_url, sandbox_server.url, READYZ_STRIPE_CACHE_SECONDS=60))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    calls = sandbox.control("GET", "/_sandbox/conformance")["responses"]
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert sandbox.control("GET", "/_sandbox/conformance")["responses"] == calls  # Stripe asked once


def test_readyz_names_the_database_when_it_cannot_connect(sandbox_server, sandbox):
    url = "postgresql+psycopg://nobody:hunter2-secret@127.0.0.1:9/none"
    app = create_app(make_config(url, sandbox_server.url, READYZ_STRIPE_CACHE_SECONDS=0))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert response.get_json()["checks"] == {**response.get_json()["checks"], "database": "error: OperationalError"}
    assert response.get_json()["checks"]["stripe"] == "ok"
    assert "hunter2" not in body and "nobody" not in body


def test_readyz_names_the_queue_when_it_is_down(ops_app):
    from storefront.web import ops

    def down() -> None:
        raise ConnectionError("redis at 127.0.0.1:6379 refused")

    ops.register_queue(ops_app, ping=down, depth=lambda: 0)
    response = ops_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["queue"] == "error: ConnectionError"
    assert "6379" not in response.get_data(as_text=True)


# --- /metrics ---------------------------------------------------------------------------------------


def test_metrics_are_refused_without_a_token_outside_the_allow_list(database_url, sandbox_server, sandbox):
    app = create_app(make_config(database_url, sandbox_server.url, METRICS_TOKEN=TOKEN))
    client = app.test_client()
    assert client.get("/metrics", environ_base=OUTSIDE).status_code == 401
    wrong = client.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": "Bearer " + "x" * 34})
    assert wrong.status_code == 403 and b"storefront_" not in wrong.data
    # from loopback but through a proxy: the proxy's address says nothing about the caller
    assert client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 401
    allowed = client.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and b"storefront_http_requests_total" in allowed.data
    assert client.get("/metrics").status_code == 200  # sandbox mode: loopback is allowed


def test_metrics_outside_sandbox_mode_need_the_token_even_from_loopback(database_url, sandbox_server):
    config = make_config(database_url, sandbox_server.url, STRIPE_API_BASE=None, METRICS_TOKEN=TOKEN)
    app = create_app(config)
    assert app.config["STRIPE_MODE"] == "test"
    assert app.test_client().get("/metrics").status_code == 401
    assert app.test_client().post("/metrics").status_code == 405


def test_metrics_count_requests_by_route_and_status(client, catalog):
    before = scrape(client)
    client.get("/healthz")
    client.get("/orders/ord_nope/status")  # a login redirect
    client.get("/no/such/page")
    after = scrape(client)
    for route, status in (("/healthz", "200"), ("/orders/<public_id>/status", "302"), ("<unmatched>", "404")):
        labels = {"route": route, "method": "GET", "status": status}
        assert value(after, "storefront_http_requests_total", **labels) == (
            value(before, "storefront_http_requests_total", **labels) + 1
        )
    histogram = {"route": "/healthz", "method": "GET"}
    assert value(after, "storefront_http_request_duration_seconds_count", **histogram) > value(
        before, "storefront_http_request_duration_seconds_count", **histogram
    )
    assert not any("ord_nope" in str(key) for key in after)  # routes, never raw paths


def test_metrics_count_a_payment_and_the_stripe_calls_behind_it(app, buyer, sandbox):
    before = scrape(buyer)
    order = _pay(app, buyer)
    _settle(app, buyer, sandbox, order)
    after = scrape(buyer)
    outcome = {"outcome": "paid", "method": "payment_element"}
    assert value(after, "storefront_payment_outcomes_total", **outcome) == (
        value(before, "storefront_payment_outcomes_total", **outcome) + 1
    )
    created = {"endpoint": "PaymentIntentService.create"}
    assert value(after, "storefront_stripe_request_duration_seconds_count", **created) == (
        value(before, "storefront_stripe_request_duration_seconds_count", **created) + 1
    )


def test_stripe_errors_are_counted_by_endpoint(app, buyer, sandbox):
    before = scrape(buyer)
    sandbox.fault("error", count=1, path_prefix="/v1/payment_intents")
    assert buyer.post("/buy/points_medium").status_code == 503
    after = scrape(buyer)
    labels = {"endpoint": "PaymentIntentService.create", "error": "APIError"}
    assert value(after, "storefront_stripe_errors_total", **labels) == (
        value(before, "storefront_stripe_errors_total", **labels) + 1
    )


def test_a_rolled_back_move_counts_no_outcome(app_ctx):
    before = value(samples(metrics.render([]).decode()), "storefront_payment_outcomes_total", outcome="x", method="y")
    db.session.execute(select(Order.id))  # the move's transaction
    metrics.record_order_move(db.session(), "x", "y")
    db.session.rollback()
    db.session.commit()
    after = value(samples(metrics.render([]).decode()), "storefront_payment_outcomes_total", outcome="x", method="y")
    assert after == before == 0


def test_webhook_lag_is_observed_when_the_worker_processes_an_event(app, buyer, sandbox, webhooks, caplog):
    lag = {"event_type": "payment_intent.succeeded", "le": "+Inf"}
    before = value(scrape(buyer), "storefront_webhook_lag_seconds_bucket", **lag)
    order = _pay(app, buyer)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    with caplog.at_level(logging.INFO, logger="storefront"):
        assert sandbox.control("POST", "/_sandbox/webhooks/flush", {"timeout": 15})["idle"]
        settle()
    assert value(scrape(buyer), "storefront_webhook_lag_seconds_bucket", **lag) == before + 1
    jobs = [getattr(r, "fields", {}) for r in caplog.records if r.name == "storefront.job"]
    succeeded = [job for job in jobs if job.get("stripe_event_type") == "payment_intent.succeeded"]
    assert succeeded and succeeded[0]["task"] == "process_event" and succeeded[0]["outcome"] == "ok"
    assert succeeded[0]["order_id"] == order.public_id and succeeded[0]["stripe_event_id"].startswith("evt_")


def test_webhook_lag_and_queue_depth(ops_app):
    from storefront.web import ops

    ops.register_queue(ops_app, ping=lambda: None, depth=lambda: 7)
    metrics.observe_webhook_lag(1, "test.lagged")  # created at the epoch: a very late event
    figures = scrape(ops_app.test_client())
    assert value(figures, "storefront_queue_depth") == 7
    assert value(figures, "storefront_webhook_lag_seconds_bucket", event_type="test.lagged", le="+Inf") >= 1
    assert value(figures, "storefront_webhook_lag_seconds_bucket", event_type="test.lagged", le="3600.0") == 0


_WORKER = """
from storefront import metrics
metrics.observe_request("/healthz", "GET", 200, 0.01)
metrics.observe_stripe_call("PaymentIntentService.create", 0.2, "APIError")
"""


def test_multiprocess_mode_adds_up_the_workers(tmp_path, monkeypatch):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two worker processes writing to one directory
        subprocess.run([sys.executable, "-c", _WORKER], env=env, cwd=ROOT, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    requests = registry.get_sample_value(
        "storefront_http_requests_total", {"route": "/healthz", "method": "GET", "status": "200"}
    )
    assert requests == 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    figures = samples(metrics.render([]).decode())  # what /metrics serves in that mode
    errors = {"endpoint": "PaymentIntentService.create", "error": "APIError"}
    assert value(figures, "storefront_stripe_errors_total", **errors) == 2
    assert value(figures, "storefront_stripe_request_duration_seconds_count", endpoint=errors["endpoint"]) == 2


def test_gunicorn_hooks_make_the_directory_and_mark_dead_workers(tmp_path, monkeypatch):
    directory = tmp_path / "prometheus"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    hooks["on_starting"](None)
    assert directory.is_dir()
    (directory / "gauge_livesum_4242.db").write_bytes(b"")  # a live gauge of worker 4242
    hooks["child_exit"](None, SimpleNamespace(pid=4242))
    assert not (directory / "gauge_livesum_4242.db").exists()


# --- logs -------------------------------------------------------------------------------------------


@pytest.fixture
def json_log(database_url, sandbox_server, sandbox):
    """An app logging JSON; yields (app, a function returning the lines written so far)."""
    app = create_app(make_config(database_url, sandbox_server.url, LOG_FORMAT="json", LOG_LEVEL="DEBUG"))
    handler = next(h for h in logging.getLogger("storefront").handlers if h.get_name() == log_setup.HANDLER_NAME)
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield app, lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    handler.setStream(previous)
    log_setup.configure({"LOG_FORMAT": "text", "LOG_LEVEL": "INFO"})  # as the session's app has it


def test_one_json_line_per_request_with_ids_and_no_secrets(json_log, sandbox, catalog):
    app, lines = json_log
    client = app.test_client()
    client.post("/signup", data={"email": "x@example.com", "card": "4242424242424242", "password": "pw"})
    assert AuthActions(client).signup().status_code in (302, 303)
    order = _pay(app, client)
    _settle(app, client, sandbox, order)
    poll = client.get(f"/orders/{order.public_id}/status", headers={"X-Request-Id": "probe-req-0001"})
    requests = [line for line in lines() if line["logger"] == "storefront.request"]
    last = requests[-1]
    assert last["request_id"] == "probe-req-0001" == poll.headers["X-Request-Id"]
    assert (last["method"], last["route"], last["status"]) == ("GET", "/orders/<public_id>/status", 200)
    assert last["order_id"] == order.public_id and isinstance(last["user_id"], int)
    assert isinstance(last["duration_ms"], float) and last["level"] == "INFO"
    buy = next(line for line in requests if line["route"] == "/buy/<lookup_key>")
    assert buy["status"] == 303 and buy["user_id"] == last["user_id"]
    assert buy["stripe_request_ids"] and all(rid.startswith("req_") for rid in buy["stripe_request_ids"])

    written = "\n".join(json.dumps(line) for line in lines())
    pi = sandbox.stripe.v1.payment_intents.retrieve(found(order.stripe_payment_intent_id))
    session_cookie = found(client.get_cookie("session"), "session cookie").value
    for secret in (session_cookie, TEST_SECRET_KEY, "sk_test_sandbox", found(pi.client_secret), "4242424242424242"):
        assert secret not in written
    assert "buyer@example.com" not in written and TEST_PASSWORD not in written


def test_probes_log_quietly(json_log):
    app, lines = json_log
    logging.getLogger("storefront").setLevel(logging.INFO)
    app.test_client().get("/healthz")
    app.test_client().get("/readyz")
    assert not [line for line in lines() if line["logger"] == "storefront.request"]


def test_a_job_logs_one_line_with_its_outcome(json_log):
    _app, lines = json_log
    with log_setup.job_scope("process_event", event_id=12):
        log_setup.bind(order_id="ord_abc")
    with pytest.raises(RuntimeError), log_setup.job_scope("process_event", event_id=13):
        raise RuntimeError("boom")
    ok, failed = [line for line in lines() if line["logger"] == "storefront.job"]
    assert ok == {**ok, "task": "process_event", "event_id": 12, "order_id": "ord_abc", "outcome": "ok"}
    assert failed == {**failed, "event_id": 13, "outcome": "error", "level": "WARNING"}
    assert ok["job_id"] != failed["job_id"] and ok["duration_ms"] >= 0


def test_text_logs_carry_the_same_fields(caplog):
    record = logging.LogRecord("storefront.request", logging.INFO, __file__, 1, "GET / 200", None, None)
    record.fields = {"request_id": "abc12345", "status": 200}
    assert log_setup.TextFormatter().format(record).endswith("GET / 200 request_id=abc12345 status=200")
