from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from limits import parse

from ..extensions import limiter
from ..models.user import normalize_email
from ..services import accounts
from ..stripe_gateway import GatewayError
from .forms import LoginForm, PostForm, SignupForm
from .helpers import safe_next_url

bp = Blueprint("auth", __name__)

OFFSITE_NEXT_MESSAGE = "That link pointed outside this site, so we brought you to the home page instead."
THROTTLED_MESSAGE = ("Too many login attempts. For your security, please wait {wait} and try again "
                     "(or reset your password).")


def _next_target() -> str:
    """Where to go after logging in: a same-site relative path, or the home page."""
    raw = request.args.get("next") or request.form.get("next")
    target = safe_next_url(raw)
    if raw and target is None:
        flash(OFFSITE_NEXT_MESSAGE, "warning")
    return target or url_for("shop.index")


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("shop.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.register_user(form.email.data, form.name.data, form.password.data)
        except accounts.EmailTaken as err:
            form.email.errors.append(str(err))
        except accounts.WeakPassword as err:
            form.password.errors.append(str(err))
        else:
            login_user(user)
            flash(f"Welcome, {user.name}! Your account is ready.", "success")
            return redirect(_next_target())
    status = 400 if form.is_submitted() else 200
    return render_template("auth/signup.html", form=form, next=safe_next_url(request.args.get("next"))), status


# --------------------------------------------------------------------------- throttling
def _limits():
    return (parse(current_app.config["LOGIN_LIMIT_PER_IP"]),
            parse(current_app.config["LOGIN_LIMIT_PER_ACCOUNT"]))


def _throttled(email: str) -> int | None:
    """Seconds to wait if this IP or this account is throttled, else None."""
    if not limiter.enabled:
        return None
    per_ip, per_account = _limits()
    strategy = limiter.limiter
    checks = ((per_ip, "login-ip", get_remote_address()), (per_account, "login-account", email))
    for item, namespace, ident in checks:
        if not strategy.test(item, namespace, ident):
            reset_at = strategy.get_window_stats(item, namespace, ident).reset_time
            return max(1, int(reset_at - time.time()))
    return None


def _record_attempt(email: str, *, failed: bool) -> None:
    if not limiter.enabled:
        return
    per_ip, per_account = _limits()
    limiter.limiter.hit(per_ip, "login-ip", get_remote_address())
    if failed:
        limiter.limiter.hit(per_account, "login-account", email)


def _wait_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{round(seconds / 60)} minutes"


def _heal_stripe_customer(user) -> None:
    """Best effort: a customer deferred at sign-up (Stripe was down) is created now."""
    if user.stripe_customer_id:
        return
    try:
        accounts.ensure_stripe_customer(user)
    except GatewayError as err:
        current_app.logger.warning("login: Stripe customer for user %s still deferred: %s", user.id, err.code)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("shop.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        email = normalize_email(form.email.data)
        wait = _throttled(email)
        if wait is not None:
            flash(THROTTLED_MESSAGE.format(wait=_wait_words(wait)), "error")
            response = current_app.make_response(
                (render_template("auth/login.html", form=form, next=safe_next_url(request.args.get("next"))), 429))
            response.headers["Retry-After"] = str(wait)
            return response
        user = accounts.authenticate(email, form.password.data)
        _record_attempt(email, failed=user is None)
        if user is not None:
            login_user(user, remember=form.remember.data)
            _heal_stripe_customer(user)
            flash(f"Welcome back, {user.name}.", "success")
            return redirect(_next_target())
        form.password.errors.append("That email and password don't match an account.")
        status = 401
    elif form.is_submitted():
        status = 400
    return render_template("auth/login.html", form=form, next=safe_next_url(request.args.get("next"))), status


@bp.post("/logout")
@login_required
def logout():
    form = PostForm()
    if form.validate_on_submit():
        logout_user()
        flash("You have been logged out.", "info")
    return redirect(url_for("shop.index"))
