"""The admin area (``/admin``): dashboard, purchases, orders and refunds, buyers and points,
Stripe events and replay, reconciliation, scheduled jobs. Admins only: anonymous visitors are sent to the log-in
page, everyone else gets 403 -- for every route of this blueprint, checked before any view runs.
Every POST carries the CSRF token (the app-wide ``CSRFProtect``)."""

from __future__ import annotations

import json
import re
import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import or_, select

from .. import jobs as task_queue
from ..extensions import db, login_manager
from ..jobs import scheduled
from ..models import Order, OrderTransition, PointsEntry, StripeEvent
from ..models.order import METHODS, STATUSES
from ..models.refund import REASONS
from ..services import admin_events, admin_reports, buyers, maintenance, reconcile, refunds, webhooks
from ..stripe_gateway import GatewayError, get_gateway
from .errors import redirect_on_error
from .params import InvalidParameter, arg_id

bp = Blueprint("admin", __name__, url_prefix="/admin")

EVENT_SOURCE = re.compile(r"^(?:event|replay):(evt_[A-Za-z0-9_]+)$")
EVENTS_PAGE = 50


@bp.before_request
def admins_only():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return None


@bp.after_request
def no_store(response):
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.context_processor
def helpers():
    gateway = get_gateway()
    return {
        "nonce": lambda: secrets.token_urlsafe(12),
        "dashboard_url": gateway.dashboard_url,
        "stripe_mode": current_app.config["STRIPE_MODE"],
    }


# --- dashboard ------------------------------------------------------------------------------------


@bp.get("/")
def dashboard():
    return render_template("admin/dashboard.html", d=admin_reports.dashboard())


# --- purchases ------------------------------------------------------------------------------------


@bp.get("/purchases")
def purchases():
    filters = admin_reports.PurchaseFilters.from_args(request.args)
    for error in filters.errors:
        flash(error, "warning")
    page = admin_reports.purchases_page(filters, request.args.get("after"))
    totals = admin_reports.purchases_totals(filters)
    return render_template(
        "admin/purchases.html",
        f=filters,
        page=page,
        totals=totals,
        products=admin_reports.product_choices(),
        statuses=STATUSES,
        methods=METHODS,
    ), 400 if filters.errors else 200


@bp.get("/purchases.csv")
def purchases_csv():
    filters = admin_reports.PurchaseFilters.from_args(request.args)
    if filters.errors:  # never a CSV of a different set than the one asked for
        raise InvalidParameter("date", " ".join(filters.errors))
    return Response(
        stream_with_context(admin_reports.purchases_csv(filters)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="purchases.csv"'},
    )


# --- one order ------------------------------------------------------------------------------------


def _order(public_id: str) -> Order:
    order = db.session.scalar(select(Order).where(Order.public_id == public_id))
    if order is None:
        abort(404)
    return order


@bp.get("/orders/<public_id>")
def order(public_id: str):
    order = _order(public_id)
    transitions = db.session.scalars(
        select(OrderTransition).where(OrderTransition.order_id == order.id).order_by(OrderTransition.id)
    ).all()
    event_ids = {m.group(1) for t in transitions if (m := EVENT_SOURCE.fullmatch(t.source))}
    stripe_ids = [
        i
        for i in (
            order.stripe_payment_intent_id,
            order.stripe_checkout_session_id,
            order.stripe_charge_id,
            order.stripe_invoice_id,
        )
        if i
    ]
    events = (
        db.session.scalars(
            select(StripeEvent)
            .where(or_(StripeEvent.object_id.in_(stripe_ids), StripeEvent.stripe_id.in_(event_ids)))
            .order_by(StripeEvent.created, StripeEvent.id)
        ).all()
        if stripe_ids or event_ids
        else []
    )
    event_rows = {e.stripe_id: e.id for e in events}
    entries = db.session.scalars(
        select(PointsEntry).where(PointsEntry.order_id == order.id).order_by(PointsEntry.id)
    ).all()
    return render_template(
        "admin/order.html",
        order=order,
        transitions=transitions,
        events=events,
        event_rows=event_rows,
        event_source=EVENT_SOURCE,
        entries=entries,
        refunds=refunds.for_order(order.id),
        refundable=refunds.refundable_amount(order),
        in_flight=refunds.in_flight(order),
        reasons=REASONS,
        amount_default=admin_reports.major(refunds.refundable_amount(order), order.currency),
    )


@bp.post("/orders/<public_id>/refund")
@redirect_on_error("admin.order", "public_id", not_found_page=False)
def refund(public_id: str):
    """Step 1: the exact amount and card to confirm; nothing is refunded yet."""
    order = _order(public_id)
    review = refunds.review_refund(
        order,
        amount_text=request.form.get("amount"),
        reason=request.form.get("reason"),
        note=request.form.get("note"),
        admin=current_user,
    )
    return render_template("admin/refund_confirm.html", review=review, order=order)


@bp.post("/orders/<public_id>/refund/confirm")
@redirect_on_error("admin.order", "public_id", not_found_page=False)
def refund_confirm(public_id: str):
    """Step 2: refund what step 1 showed (a signed token), once."""
    order = _order(public_id)
    result = refunds.confirm_refund(order, request.form.get("confirmation"), admin=current_user)
    if result.duplicate:
        flash(_("That refund was already submitted; nothing more was refunded."), "info")
    else:
        flash(_("Refund sent to Stripe. The order changes when Stripe confirms it."), "success")
    return redirect(url_for("admin.order", public_id=public_id))


@bp.post("/orders/<public_id>/sync")
def sync(public_id: str):
    order = _order(public_id)
    before = order.status
    try:
        order = refunds.sync_order(order.id)
    except GatewayError as err:
        flash(_("Stripe could not be asked: %(message)s", message=err.user_message), "error")
    else:
        flash(
            _(
                "Synced with Stripe: %(before)s → %(after)s.",
                before=before.replace("_", " "),
                after=order.status.replace("_", " "),
            )
            if before != order.status
            else _("Synced with Stripe: nothing changed."),
            "success",
        )
    return redirect(url_for("admin.order", public_id=public_id))


# --- buyers ---------------------------------------------------------------------------------------


@bp.get("/buyers")
def buyers_index():
    q = (request.args.get("q") or "").strip()[:254]
    page = buyers.buyers_page(q or None, arg_id("before"))
    return render_template("admin/buyers.html", q=q, page=page)


@bp.get("/buyers/<public_id>")
def buyer(public_id: str):
    user = buyers.buyer_by_public_id(public_id) or abort(404)
    return render_template(
        "admin/buyer.html",
        user=user,
        orders=buyers.recent_orders(user.id),
        ledger=buyers.ledger(user.id, before=arg_id("before")),
        subscriptions=buyers.subscription_of(user.id),
    )


@bp.post("/buyers/<public_id>/points")
@redirect_on_error("admin.buyer", "public_id")
def adjust_points(public_id: str):
    user = buyers.buyer_by_public_id(public_id) or abort(404)
    recorded = buyers.adjust_points(
        user,
        amount_text=request.form.get("points"),
        reason=request.form.get("reason"),
        nonce=request.form.get("nonce", ""),
        admin=current_user,
    )
    flash(
        _("Points adjusted.") if recorded else _("That adjustment was already recorded; nothing changed."),
        "success" if recorded else "info",
    )
    return redirect(url_for("admin.buyer", public_id=public_id))


@bp.post("/buyers/<public_id>/sessions/end")
def end_sessions(public_id: str):
    """Sign the buyer out everywhere (a stolen laptop, a shared computer)."""
    from ..services import accounts

    user = buyers.buyer_by_public_id(public_id) or abort(404)
    accounts.end_sessions(user)
    current_app.logger.info("admin %s ended every session of user %s", current_user.id, user.id)
    flash(_("%(email)s is signed out on every device.", email=user.email), "success")
    return redirect(url_for("admin.buyer", public_id=public_id))


# --- Stripe events --------------------------------------------------------------------------------


@bp.get("/events")
def events():
    """Stored events, newest first, each with its state; failed ones counted at the top.
    ``?state=`` one of ``admin_events.STATES`` (anything else: 400)."""
    filters = admin_events.EventFilters(
        kind=(request.args.get("type") or "").strip()[:100],
        q=(request.args.get("q") or "").strip()[:255],
        state=admin_events.parse_state(request.args.get("state")),
        problem=request.args.get("problem") == "1",
    )
    rows, next_before = admin_events.events_page(filters, arg_id("before"), EVENTS_PAGE)
    return render_template(
        "admin/events.html",
        rows=rows,
        kind=filters.kind,
        q=filters.q,
        state=filters.state,
        states=admin_events.STATES,
        problem=filters.problem,
        failed=admin_events.failed_count(),
        next_before=next_before,
        handled=webhooks.ENABLED_EVENTS,
    )


@bp.get("/events/<int:event_id>")
def event(event_id: int):
    row = db.session.get(StripeEvent, event_id) or abort(404)
    try:
        pretty = json.dumps(json.loads(row.payload), indent=2, sort_keys=True)
    except ValueError:
        pretty = row.payload
    orders = (
        db.session.scalars(
            select(Order)
            .where(
                or_(
                    Order.stripe_payment_intent_id == row.object_id,
                    Order.stripe_checkout_session_id == row.object_id,
                    Order.stripe_charge_id == row.object_id,
                    Order.stripe_invoice_id == row.object_id,
                )
            )
            .limit(5)
        ).all()
        if row.object_id
        else []
    )
    return render_template("admin/event.html", row=row, pretty=pretty, orders=orders)


@bp.post("/events/<int:event_id>/replay")
def replay(event_id: int):
    row = db.session.get(StripeEvent, event_id) or abort(404)
    outcome = webhooks.process(row.id, source_prefix="replay")
    if outcome.status == 200:
        flash(_("Replayed %(id)s: the handler ran again.", id=row.stripe_id), "success")
    else:
        flash(_("Replaying %(id)s failed; the error is recorded below.", id=row.stripe_id), "error")
    return redirect(url_for("admin.event", event_id=event_id))


# --- reconciliation -------------------------------------------------------------------------------


@bp.get("/reconcile")
def reconcile_form():
    return render_template("admin/reconcile.html", report=None, days=3)


@bp.post("/reconcile")
def reconcile_run():
    days = request.form.get("days", type=int) or 3
    try:
        report = reconcile.reconcile(days)
    except reconcile.ReconcileError as err:
        flash(str(err), "error")
        return render_template("admin/reconcile.html", report=None, days=days), 400
    return render_template("admin/reconcile.html", report=report, days=days)


# --- scheduled jobs -------------------------------------------------------------------------------


@bp.get("/jobs")
def jobs():
    """Each job's schedule, last run and result; the recent runs (of one job: ``?job=NAME``)."""
    name = request.args.get("job") or None
    if name is not None and name not in maintenance.JOBS:
        raise InvalidParameter("job", "No such job.")
    return render_template(
        "admin/jobs.html", jobs=maintenance.overview(), runs=maintenance.recent_runs(name=name), job=name
    )


@bp.post("/jobs/<name>/run")
def job_run(name: str):
    """Run a scheduled job now: queued for a worker (the same recorded run as the schedule's);
    run here, in the request, only when the queue can't take it."""
    if name not in maintenance.JOBS:
        abort(404)
    holder = maintenance.running(name)
    if holder is not None:
        flash(
            _(
                "%(job)s is already running (started %(at)s UTC by %(by)s).",
                job=name,
                at=f"{holder.started_at:%H:%M:%S}",
                by=holder.trigger,
            ),
            "info",
        )
        return redirect(url_for("admin.jobs"))
    trigger = f"admin:{current_user.email}"
    try:
        task_queue.enqueue(scheduled.run_now, name, trigger)
    except Exception:  # the queue's storage is down (Redis stopped): the run must not be lost
        current_app.logger.exception("job %s could not be queued; running it in the request", name)
    else:
        flash(_("%(job)s is queued: a worker runs it in a moment (reload to see its result).", job=name), "info")
        return redirect(url_for("admin.jobs"))
    run = maintenance.run_job(name, trigger=trigger)
    if run.outcome == "ok":
        flash(_("%(job)s: %(summary)s", job=name, summary=run.summary), "success")
    elif run.outcome == "skipped":
        flash(_("%(job)s is already running: %(summary)s", job=name, summary=run.summary), "info")
    else:
        flash(_("%(job)s failed: %(error)s", job=name, error=run.summary or run.error), "error")
    return redirect(url_for("admin.jobs"))
