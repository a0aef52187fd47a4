"""Scheduled jobs against the running store and the sandbox (no Stripe mocks): stale unpaid
orders settled with what Stripe says (canceled, expired, gone, paid after a lost webhook; open
ones left alone; a second run changes nothing), owed Lifetime cancels retried, every run
recorded (ok / failed with its error), the admin's jobs page and its "Run now", `flask jobs`."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from storefront import jobs
from storefront.extensions import db
from storefront.jobs import scheduled
from storefront.models import JobRun, Order, OrderTransition, PointsEntry, User, utcnow
from storefront.services import maintenance

from .conftest import browser_confirm, found
from .factories import make_order, price_of
from .test_transactions import pay_lifetime_with_a_saved_card, stripe_sub, sub_row, subscription_writes

# --- helpers --------------------------------------------------------------------------------------


def buy(app, buyer, lookup_key="points_medium", **form) -> Order:
    assert buyer.post(f"/buy/{lookup_key}", data=form).status_code == 303
    with app.app_context():
        order = found(db.session.scalar(select(Order).order_by(Order.id.desc())), "order")
        db.session.expunge(order)
        return order


def age(app, *orders: Order, hours: float = 2) -> None:
    """Make orders look ``hours`` old (the job leaves younger ones to their pay page)."""
    with app.app_context():
        db.session.execute(
            update(Order)
            .where(Order.id.in_([o.id for o in orders]))
            .values(created_at=utcnow() - timedelta(hours=hours))
        )
        db.session.commit()


def status_of(app, order: Order) -> str:
    with app.app_context():
        return found(db.session.scalar(select(Order.status).where(Order.id == order.id)), "order")


def run(app, name: str, trigger: str = "test") -> JobRun:
    with app.app_context():
        row = maintenance.run_job(name, trigger=trigger)
        db.session.expunge(row)
        return row


def state(app) -> dict:
    """What a second run must leave alone."""
    with app.app_context():
        return {
            "orders": db.session.execute(select(Order.public_id, Order.status, Order.paid_at).order_by(Order.id)).all(),
            "ledger": db.session.execute(select(PointsEntry.key, PointsEntry.amount).order_by(PointsEntry.id)).all(),
            "transitions": db.session.scalar(select(func.count(OrderTransition.id))),
        }


def finished_runs(app, count: int, timeout: float = 20) -> list[JobRun]:
    """The job runs, once ``count`` of them have finished (a worker thread runs them)."""
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            rows = db.session.scalars(select(JobRun).where(JobRun.finished_at.is_not(None)).order_by(JobRun.id)).all()
            db.session.expunge_all()
            db.session.remove()
        if len(rows) >= count or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.05)


def balance(app) -> int:
    with app.app_context():
        return found(db.session.scalar(select(User.points_balance).where(User.email == "buyer@example.com")))


# --- stale unpaid orders --------------------------------------------------------------------------


def test_stale_orders_are_settled_with_what_stripe_says_and_open_ones_are_left_alone(app, buyer, sandbox):
    canceled = buy(app, buyer)
    sandbox.stripe.v1.payment_intents.cancel(found(canceled.stripe_payment_intent_id))
    still_open = buy(app, buyer)
    checkout = buy(app, buyer, "points_large", method="checkout")
    sandbox.stripe.v1.checkout.sessions.expire(found(checkout.stripe_checkout_session_id))
    young = buy(app, buyer)
    sandbox.stripe.v1.payment_intents.cancel(found(young.stripe_payment_intent_id))
    with app.app_context():  # its PaymentIntent is unknown at Stripe (deleted, or a test-mode reset)
        user = found(db.session.scalar(select(User).where(User.email == "buyer@example.com")))
        gone = make_order(user, price_of("points_small"))
        db.session.commit()
        db.session.refresh(gone)
        db.session.expunge(gone)
    age(app, canceled, still_open, checkout, gone)

    first = run(app, "expire_orders")
    assert first.outcome == "ok" and first.error is None
    assert first.summary == "4 stale order(s) checked; 3 settled (1 canceled, 2 expired)."
    assert status_of(app, canceled) == "canceled"
    assert status_of(app, checkout) == "expired"
    assert status_of(app, gone) == "expired"
    assert status_of(app, still_open) == "pending"  # the buyer may still pay it
    assert status_of(app, young) == "pending"  # under an hour old: not asked about
    with app.app_context():
        sources = db.session.scalars(
            select(OrderTransition.source).where(OrderTransition.to_status.in_(("canceled", "expired"))).distinct()
        ).all()
    assert sources == ["expire"]

    before = state(app)
    second = run(app, "expire_orders")
    assert second.outcome == "ok" and second.summary == "1 stale order(s) checked; none settled."
    assert state(app) == before


def test_a_stale_order_stripe_says_succeeded_is_paid_and_credited_once(app, buyer, sandbox):
    order = buy(app, buyer)
    browser_confirm(sandbox, order.stripe_payment_intent_id)  # no webhook endpoint: the store never hears
    age(app, order)
    assert status_of(app, order) == "pending" and balance(app) == 0

    assert run(app, "expire_orders").summary == "1 stale order(s) checked; 1 settled (1 paid)."
    assert status_of(app, order) == "paid" and balance(app) == 550
    before = state(app)
    assert run(app, "expire_orders").summary == "0 stale order(s) checked; none settled."
    assert run(app, "reconcile").outcome == "ok"  # the other repair agrees: nothing more
    assert state(app) == before and balance(app) == 550


def test_stripe_failing_records_a_failed_run_with_its_error_and_changes_nothing(app, buyer, sandbox):
    order = buy(app, buyer)
    sandbox.stripe.v1.payment_intents.cancel(found(order.stripe_payment_intent_id))
    age(app, order)
    sandbox.fault("error", count=5, path_prefix="/v1/payment_intents")

    failed = run(app, "expire_orders")
    assert failed.outcome == "failed" and failed.finished_at is not None
    assert failed.summary == "1 stale order(s) checked; none settled; 1 error(s)."
    assert order.public_id in found(failed.error) and "payment_provider_unavailable" in found(failed.error)
    assert status_of(app, order) == "pending"

    listing = run(app, "reconcile")  # Stripe can't even be listed: the whole run fails
    assert listing.outcome == "failed" and listing.summary is None
    assert "Stripe could not be listed" in found(listing.error)

    sandbox.clear_faults()
    with app.app_context():  # the next scheduled run asks again (least recently asked first)
        db.session.execute(update(Order).values(synced_at=None))
        db.session.commit()
    assert run(app, "expire_orders").outcome == "ok"
    assert status_of(app, order) == "canceled"


# --- owed Stripe writes ---------------------------------------------------------------------------


def test_owed_lifetime_cancels_are_retried_until_they_hold(app, buyer, sandbox, tx_guard):
    stripe_id, _order, reply = pay_lifetime_with_a_saved_card(app, buyer, sandbox, cancel_failures=50)
    assert reply.get_json()["order_status"] == "paid"
    assert sub_row(app).pending_cancel is not None

    still_down = run(app, "retry_owed_cancels")
    assert still_down.outcome == "failed" and still_down.summary == "0 owed subscription cancel(s) sent, 1 still owed."
    assert stripe_id in found(still_down.error) and "payment_provider_unavailable" in found(still_down.error)

    sandbox.clear_faults()
    sent = run(app, "retry_owed_cancels")
    assert sent.outcome == "ok" and sent.summary == "1 owed subscription cancel(s) sent."
    assert stripe_sub(sandbox).cancel_at_period_end is True
    assert sub_row(app).pending_cancel is None
    writes = subscription_writes(tx_guard, stripe_id)
    assert run(app, "retry_owed_cancels").summary == "0 owed subscription cancel(s) sent."
    assert subscription_writes(tx_guard, stripe_id) == writes  # nothing sent again


# --- runs recorded, the admin page, the command ---------------------------------------------------


def test_runs_are_recorded_and_only_the_newest_are_kept(app, sandbox, monkeypatch):
    monkeypatch.setattr(maintenance, "KEEP_RUNS", 3)
    ids = [run(app, "retry_owed_cancels").id for _ in range(5)]
    with app.app_context():
        kept = db.session.scalars(select(JobRun.id).order_by(JobRun.id)).all()
        (status,) = [s for s in maintenance.overview() if s.job.name == "retry_owed_cancels"]
        assert status.last is not None and status.last.id == ids[-1]
        assert status.last_ok is not None and status.last.trigger == "test"
    assert kept == ids[-3:]


def test_a_run_that_never_finished_shows_as_failed_once_it_is_over_an_hour_old(app, sandbox):
    """A killed worker's run holds the job's lock for the job's lease only (reconcile: an hour)."""
    with app.app_context():
        db.session.add(JobRun(job="reconcile", trigger="schedule", started_at=utcnow() - timedelta(hours=2)))
        db.session.commit()
    run(app, "reconcile")
    with app.app_context():
        rows = db.session.execute(select(JobRun.outcome, JobRun.error).order_by(JobRun.id)).all()
    assert [outcome for outcome, _ in rows] == ["failed", "ok"]
    assert "Did not finish" in found(rows[0].error)


def test_a_run_within_its_lease_holds_the_lock_and_the_sweeper_s_lease_is_short(app, sandbox):
    with app.app_context():
        db.session.add_all(
            [
                JobRun(job="reconcile", trigger="schedule", started_at=utcnow() - timedelta(minutes=5)),
                JobRun(job="sweep_events", trigger="schedule", started_at=utcnow() - timedelta(minutes=6)),
            ]
        )
        db.session.commit()
    skipped = run(app, "reconcile")
    assert skipped.outcome == "skipped" and "another run was running since" in found(skipped.summary)
    assert "(schedule)" in found(skipped.summary)
    assert run(app, "sweep_events").outcome == "ok"  # its lease is 5 minutes: that worker died
    with app.app_context():
        rows = db.session.execute(select(JobRun.job, JobRun.outcome).order_by(JobRun.id)).all()
        (status,) = [s for s in maintenance.overview() if s.job.name == "reconcile"]
        assert status.last is not None and status.last.outcome == "running"  # not the skipped one
    assert rows == [
        ("reconcile", "running"),
        ("sweep_events", "failed"),
        ("reconcile", "skipped"),
        ("sweep_events", "ok"),
    ]


def test_the_admin_lists_jobs_and_runs_one_now(app, admin, buyer, sandbox, worker):
    page = admin.get("/admin/jobs")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    for name in maintenance.JOBS:
        assert f'data-job="{name}"' in html and f"/admin/jobs/{name}/run" in html
    assert "never" in html and "every 15 minutes" in html

    response = admin.post("/admin/jobs/reconcile/run")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/jobs"
    (row,) = finished_runs(app, 1)  # a worker ran it
    assert (row.job, row.outcome, row.trigger) == ("reconcile", "ok", "admin:boss@example.com")
    html = admin.get("/admin/jobs").get_data(as_text=True)
    assert "Checked the last 3 day(s)" in html and "admin:boss@example.com" in html
    assert admin.post("/admin/jobs/nope/run").status_code == 404
    run(app, "retry_owed_cancels")
    one_job = admin.get("/admin/jobs?job=retry_owed_cancels").get_data(as_text=True)
    runs_table = one_job.split("data-runs", 1)[1]
    assert "<code>retry_owed_cancels</code>" in runs_table and "<code>reconcile</code>" not in runs_table
    assert admin.get("/admin/jobs?job=nope").status_code == 400

    assert buyer.get("/admin/jobs").status_code == 403
    assert buyer.post("/admin/jobs/reconcile/run").status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count(JobRun.id))) == 2  # the buyer's ran nothing


def test_jobs_command_lists_and_runs(app, runner, sandbox):
    listed = runner.invoke(args=["jobs", "list"])
    assert listed.exit_code == 0 and "expire_orders" in listed.output and "never run" in listed.output
    result = runner.invoke(args=["jobs", "run", "expire_orders"])
    assert result.exit_code == 0, result.output
    assert "0 stale order(s) checked" in result.output
    assert "ok: 0 stale" in runner.invoke(args=["jobs", "list"]).output
    assert runner.invoke(args=["jobs", "run", "nope"]).exit_code != 0
    sandbox.fault("error", count=5, path_prefix="/v1/payment_intents")
    failed = runner.invoke(args=["jobs", "run", "reconcile"])
    assert failed.exit_code != 0 and "reconcile failed" in failed.output


def test_the_queue_runs_the_periodic_jobs_due_at_a_time_and_each_records_its_run(app, sandbox, worker):
    huey = jobs.get_huey(app)
    names = {"reconcile", "expire_orders", "retry_owed_cancels", "sweep_events"}

    def due_at(hour: int, minute: int) -> set[str]:
        tasks = huey.read_periodic(datetime(2026, 11, 30, hour, minute, tzinfo=UTC))
        return {t.name.rsplit(".", 1)[-1] for t in tasks} & names

    assert due_at(12, 15) == {"reconcile", "retry_owed_cancels", "sweep_events"}
    assert due_at(12, 20) == {"expire_orders", "retry_owed_cancels", "sweep_events"}
    assert due_at(12, 21) == {"sweep_events"}
    for task in huey.read_periodic(datetime(2026, 11, 30, 12, 20, tzinfo=UTC)):
        if task.name.rsplit(".", 1)[-1] in names:
            huey.enqueue(task)  # what the worker's scheduler does at 12:20
    runs = finished_runs(app, 3)
    assert sorted((r.job, r.outcome, r.trigger) for r in runs) == [
        ("expire_orders", "ok", "schedule"),
        ("retry_owed_cancels", "ok", "schedule"),
        ("sweep_events", "ok", "schedule"),
    ]
    assert {r.job: r.summary for r in runs}["sweep_events"] == "0 processed, 0 failed"


def test_run_now_goes_through_the_queue(app, admin, sandbox, worker):
    response = admin.post("/admin/jobs/expire_orders/run")
    assert response.status_code == 302
    (run,) = finished_runs(app, 1)
    assert (run.job, run.outcome, run.trigger) == ("expire_orders", "ok", "admin:boss@example.com")
    assert "expire_orders is queued" in admin.get("/admin/jobs").get_data(as_text=True)


def test_run_now_runs_in_the_request_when_the_queue_is_down(app, admin, sandbox, monkeypatch):
    def queue_down(*args):
        raise ConnectionError("queue storage unreachable")

    monkeypatch.setattr(jobs, "enqueue", queue_down)
    response = admin.post("/admin/jobs/retry_owed_cancels/run", follow_redirects=True)
    assert "retry_owed_cancels: 0 owed subscription cancel(s) sent." in response.get_data(as_text=True)
    with app.app_context():
        row = found(db.session.scalar(select(JobRun)), "the run")
        assert (row.job, row.outcome, row.trigger) == ("retry_owed_cancels", "ok", "admin:boss@example.com")


# --- one run of a job at a time (the overlap lock) -------------------------------------------------


class Gate:
    """A test job that runs until the test opens the gate (or raises when told to)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.fail = False
        self.runs = 0

    def __call__(self) -> maintenance.Outcome:
        self.runs += 1
        self.entered.set()
        assert self.opened.wait(20), "the test never opened the gate"
        if self.fail:
            raise RuntimeError("the job broke")
        return maintenance.Outcome("went through the gate")


@pytest.fixture
def gate(monkeypatch):
    gate = Gate()
    monkeypatch.setitem(
        maintenance.JOBS, "gated", maintenance.Job("gated", "Gated test job", "never", {"minute": "0"}, gate)
    )
    yield gate
    gate.opened.set()


def runs_of(app, name: str) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.execute(select(JobRun.outcome, JobRun.trigger).where(JobRun.job == name).order_by(JobRun.id))
        result = [(str(outcome), str(trigger)) for outcome, trigger in rows]
        db.session.remove()
    return result


def enqueue_run(app, name: str, trigger: str) -> None:
    with app.app_context():
        jobs.enqueue(scheduled.run_now, name, trigger)


def wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_runs_of_a_job_at_once_on_the_queue_one_runs_one_is_skipped(app, sandbox, worker, gate):
    enqueue_run(app, "gated", "first")
    assert gate.entered.wait(20)  # a worker thread is in the job, holding its lock
    enqueue_run(app, "gated", "second")  # the other worker thread
    wait_for(lambda: ("skipped", "second") in runs_of(app, "gated"))
    assert runs_of(app, "gated") == [("running", "first"), ("skipped", "second")]
    gate.opened.set()
    wait_for(lambda: ("ok", "first") in runs_of(app, "gated"))
    assert gate.runs == 1
    assert runs_of(app, "gated") == [("ok", "first"), ("skipped", "second")]
    # the lock is free again: the next run runs
    assert run(app, "gated").outcome == "ok" and gate.runs == 2


def test_the_lock_is_released_when_the_job_raises(app, sandbox, worker, gate):
    gate.fail = True
    gate.opened.set()
    enqueue_run(app, "gated", "breaks")
    wait_for(lambda: ("failed", "breaks") in runs_of(app, "gated"))
    gate.fail = False
    again = run(app, "gated")
    assert (again.outcome, again.summary) == ("ok", "went through the gate")
    with app.app_context():
        errors = db.session.scalars(select(JobRun.error).where(JobRun.job == "gated")).all()
    assert errors == ["RuntimeError: the job broke", None]


def test_run_now_while_the_job_runs_says_it_is_already_running(app, admin, sandbox, worker, runner):
    with app.app_context():
        db.session.add(JobRun(job="reconcile", trigger="schedule", started_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    page = admin.post("/admin/jobs/reconcile/run", follow_redirects=True).get_data(as_text=True)
    assert "reconcile is already running (started" in page and "by schedule" in page
    assert runs_of(app, "reconcile") == [("running", "schedule")]  # nothing queued, nothing run
    result = runner.invoke(args=["jobs", "run", "reconcile"])
    assert result.exit_code == 0 and "Skipped: another run was running since" in result.output
