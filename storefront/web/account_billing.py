"""Account billing: saved cards, the subscription (start, change, cancel, resume, pay an overdue
invoice), invoices and the billing portal. Thin views over ``services.cards`` and
``services.subscriptions``; every POST carries the CSRF token (``CSRFProtect``)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..services import cards, plan_changes, subscriptions
from ..services.errors import NotFound, ServiceError
from .errors import redirect_on_error
from .helpers import format_money, wants_json
from .orders import checkout_return_urls, external_url

bp = Blueprint("billing", __name__, url_prefix="/account")

#: session key: the SetupIntent the add-a-card page last handed out (reused while unconfirmed)
SETUP_INTENT_KEY = "setup_intent"


@bp.app_context_processor
def billing_context() -> dict:
    """For base.html: the past-due banner (loaded with the signed-in user: no extra query)."""
    if not current_user.is_authenticated:
        return {"past_due_subscription": None}
    return {"past_due_subscription": current_user.past_due_subscription}


def _own(public_id: str):
    try:
        return subscriptions.own_subscription(current_user, public_id)
    except NotFound:
        abort(404)


def _stripe_js() -> dict:
    return {
        "publishable_key": current_app.config["STRIPE_PUBLISHABLE_KEY"],
        "stripe_js_url": current_app.config["STRIPE_JS_URL"],
    }


# --- the billing page -----------------------------------------------------------------------------


@bp.get("/billing")
@login_required
def index():
    subscriptions.sync(current_user)
    sub = subscriptions.live_subscription(current_user.id)
    upcoming = subscriptions.upcoming_amount(sub) if sub is not None else None
    try:
        invoice_rows, invoices_error = subscriptions.invoices(current_user), None
    except ServiceError as err:
        invoice_rows, invoices_error = [], err.message
    return render_template(
        "account/billing.html",
        subscription=sub,
        upcoming=upcoming,
        plans=subscriptions.plans(),
        invoices=invoice_rows,
        invoices_error=invoices_error,
        attempt=subscriptions.new_attempt_nonce(),
    )


@bp.post("/subscribe/<lookup_key>")
@login_required
@redirect_on_error("billing.index")
def subscribe(lookup_key: str):
    """Start a plan: pay on our page (the first invoice's pay page) or through Checkout."""
    if request.form.get("method") == "checkout":
        _order, url = subscriptions.start_checkout(current_user, lookup_key, return_urls=checkout_return_urls)
        return redirect(url, code=303)
    order = subscriptions.subscribe(
        current_user, lookup_key, attempt=request.form.get("attempt") or subscriptions.new_attempt_nonce()
    )
    return redirect(url_for("pay.page", public_id=order.public_id), code=303)


@bp.get("/subscription/<public_id>/change/<lookup_key>")
@login_required
@redirect_on_error("billing.index")
def change_preview(public_id: str, lookup_key: str):
    sub = _own(public_id)
    preview = plan_changes.preview_change(sub, lookup_key)
    return render_template("account/change_plan.html", subscription=sub, preview=preview)


@bp.post("/subscription/<public_id>/change")
@login_required
@redirect_on_error("billing.index")
def change(public_id: str):
    """Confirm a preview: only its signed token says what changes (plan, ``proration_date``,
    amount); a stale one shows a fresh preview (409) and changes nothing."""
    sub = _own(public_id)
    try:
        result = plan_changes.change_plan(sub, request.form.get("preview"))
    except plan_changes.PreviewStale as err:
        if wants_json():
            raise  # the JSON error shape, from web/errors.py
        return _stale_preview(sub, err)
    if result.unpaid_order is not None:
        order = result.unpaid_order
        flash(
            _(
                "Your plan has changed. The difference of %(amount)s "
                "still needs to be paid: confirm it with your bank or use another card.",
                amount=format_money(order.amount, order.currency),
            ),
            "warning",
        )
        return redirect(url_for("pay.page", public_id=order.public_id), code=303)
    if result.charged:
        flash(
            _(
                "Your plan has changed. %(amount)s was charged now; your next invoice is the new plan's usual price.",
                amount=format_money(result.charged, result.currency),
            ),
            "success",
        )
    elif result.upgrade:
        flash(_("Your plan has changed. The difference is invoiced now; it shows under your invoices."), "success")
    else:
        flash(_("Your plan has changed. The credit for unused time is on your next invoice."), "success")
    return redirect(url_for("billing.index"), code=303)


def _stale_preview(sub, err: ServiceError):
    """Prices changed (or the preview expired or was altered): show today's preview for the
    plan the form named, to review again; nothing was changed."""
    try:
        fresh = plan_changes.preview_change(sub, (request.form.get("plan") or "")[:100])
    except ServiceError:
        flash(err.message, "warning")
        return redirect(url_for("billing.index"), code=303)
    return render_template("account/change_plan.html", subscription=sub, preview=fresh, stale=err.message), err.status


@bp.post("/subscription/<public_id>/cancel")
@login_required
@redirect_on_error("billing.index")
def cancel(public_id: str):
    sub = subscriptions.cancel_at_period_end(
        _own(public_id), attempt=request.form.get("attempt") or subscriptions.new_attempt_nonce()
    )
    when = sub.current_period_end.strftime("%Y-%m-%d") if sub.current_period_end else _("the period end")
    flash(_("Your subscription will end on %(when)s. You can resume it until then.", when=when), "info")
    return redirect(url_for("billing.index"), code=303)


@bp.post("/subscription/<public_id>/resume")
@login_required
@redirect_on_error("billing.index")
def resume(public_id: str):
    subscriptions.resume(_own(public_id), attempt=request.form.get("attempt") or subscriptions.new_attempt_nonce())
    flash(_("Your subscription will renew as usual."), "success")
    return redirect(url_for("billing.index"), code=303)


@bp.post("/subscription/<public_id>/cancel-now")
@login_required
@redirect_on_error("billing.index")
def cancel_now(public_id: str):
    """Admins only: end a subscription immediately (buyers get 404, as for a missing one)."""
    if not current_user.is_admin:
        abort(404)
    subscriptions.admin_cancel_now(current_user, _own(public_id))
    flash(_("The subscription was canceled now."), "success")
    return redirect(
        request.referrer
        if request.referrer and request.referrer.startswith(request.host_url)
        else url_for("billing.index"),
        code=303,
    )


@bp.post("/subscription/<public_id>/pay")
@login_required
@redirect_on_error("billing.index")
def pay_overdue(public_id: str):
    """The past-due banner's button: the open invoice's pay page (another card, 3-D Secure)."""
    order = subscriptions.open_invoice_order(_own(public_id))
    return redirect(url_for("pay.page", public_id=order.public_id), code=303)


@bp.post("/billing/portal")
@login_required
@redirect_on_error("billing.index")
def portal():
    url = subscriptions.portal_url(current_user, external_url("billing.index"))
    return redirect(url, code=303)


# --- saved cards ------------------------------------------------------------------------------------


@bp.get("/cards")
@login_required
def cards_page():
    try:
        found, error = cards.list_cards(current_user), None
    except ServiceError as err:  # Stripe is down: the page says so where the cards would be
        found, error = [], err.message
    return render_template("account/cards.html", cards=found, cards_error=error)


@bp.get("/cards/new")
@login_required
@redirect_on_error("billing.cards_page")
def new_card():
    setup_intent = cards.start_setup(current_user, reuse=session.get(SETUP_INTENT_KEY))
    session[SETUP_INTENT_KEY] = setup_intent["id"]
    return render_template(
        "account/new_card.html",
        client_secret=setup_intent["client_secret"],
        return_url=external_url("billing.card_added"),
        **_stripe_js(),
    )


@bp.get("/cards/added")
@login_required
@redirect_on_error("billing.cards_page")
def card_added():
    """Where ``stripe.confirmSetup`` returns (``setup_intent`` in the query)."""
    status, card = cards.finish_setup(current_user, request.args.get("setup_intent", ""))
    if status == "succeeded":
        flash(_("%(card)s was saved.", card=card.label) if card else _("Your card was saved."), "success")
    elif status == "processing":
        flash(_("Your card is being checked; it will show here shortly."), "info")
    else:
        flash(_("Your card was not saved. Please try again or use another card."), "error")
    return redirect(url_for("billing.cards_page"), code=303)


@bp.post("/cards/<payment_method>/default")
@login_required
@redirect_on_error("billing.cards_page")
def default_card(payment_method: str):
    cards.set_default(current_user, payment_method)
    flash(_("Your default card was changed."), "success")
    return redirect(url_for("billing.cards_page"), code=303)


@bp.post("/cards/<payment_method>/remove")
@login_required
@redirect_on_error("billing.cards_page")
def remove_card(payment_method: str):
    cards.remove(current_user, payment_method)
    flash(_("The card was removed."), "success")
    return redirect(url_for("billing.cards_page"), code=303)
