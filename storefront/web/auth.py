from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from limits import RateLimitItem, parse

from .. import jobs
from ..extensions import limiter
from ..models.user import normalize_email
from ..services import account_mail, accounts
from ..stripe_gateway import GatewayError
from . import throttle
from .forms import ForgotPasswordForm, LoginForm, PostForm, ResetPasswordForm, SignupForm
from .helpers import safe_next_url

bp = Blueprint("auth", __name__)

# Translated when shown (lazy); %(wait)s / %(email)s are filled in with ``%``.
OFFSITE_NEXT_MESSAGE = _l("That link pointed outside this site, so we brought you to the home page instead.")
THROTTLED_MESSAGE = _l(
    "Too many login attempts. For your security, please wait %(wait)s and try again, "
    "or reset your password by email (Forgot password? below)."
)
VERIFY_SENT_MESSAGE = _l("We sent you a link to confirm your email address.")
RESET_THROTTLED_MESSAGE = _l("Too many password reset requests from your network. Please wait %(wait)s and try again.")
RESET_SENT_MESSAGE = _l(
    "If an account uses %(email)s, we have sent it a link to choose a new password. "
    "The link works once, for an hour. Check your spam folder if it doesn't arrive."
)
SIGNUP_THROTTLED_MESSAGE = _l("Too many accounts were created from your network. Please wait %(wait)s and try again.")


def sign_in(user, *, remember: bool = False) -> None:
    """Start a fresh session for ``user``: nothing of the anonymous session survives (its CSRF
    secret included), and the session and remember-me cookie carry a new sign-in's token."""
    session.clear()
    accounts.start_session(
        user, max_age=accounts.sign_in_max_age(current_app.config), user_agent=request.user_agent.string
    )
    login_user(user, remember=remember, fresh=True)


def sign_out() -> None:
    """End this device's sign-in (its session and remember-me cookie, copies included); the
    user's other devices stay signed in."""
    if current_user.is_authenticated:
        accounts.end_session(current_user._get_current_object())
    session.clear()
    logout_user()  # after clear(): it marks the remember-me cookie for deletion in the session


def _next_target() -> str:
    """Where to go after logging in: a same-site relative path, or the home page."""
    raw = request.args.get("next") or request.form.get("next")
    target = safe_next_url(raw)
    if raw and target is None:
        flash(str(OFFSITE_NEXT_MESSAGE), "warning")
    return target or url_for("shop.index")


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("shop.index"))
    form = SignupForm()
    if form.validate_on_submit():
        wait = _signup_throttled()
        if wait is not None:
            flash(SIGNUP_THROTTLED_MESSAGE % {"wait": _wait_words(wait)}, "error")
            return _throttled_response("auth/signup.html", form, wait)
        _hit(_signup_limit(), "signup-ip", get_remote_address() or "-")
        try:
            user = accounts.register_user(form.email.data, form.name.data, form.password.data)
        except accounts.EmailTaken as err:
            form.email.errors.append(str(err))
        except accounts.WeakPassword as err:
            form.password.errors.append(str(err))
        except accounts.AccountError as err:  # e.g. a character the form let through
            form.name.errors.append(str(err))
        else:
            sign_in(user)
            account_mail.queue_verification(user)
            flash(
                _(
                    "Welcome, %(name)s! Your account is ready. We sent you a link to confirm your email address.",
                    name=user.name,
                ),
                "success",
            )
            return redirect(_next_target())
    status = 400 if form.is_submitted() else 200
    return render_template("auth/signup.html", form=form, next=safe_next_url(request.args.get("next"))), status


# --------------------------------------------------------------------------- throttling
# Log-in: every attempt counts against the IP; failures count against (account, IP), so
# an attacker elsewhere can't lock the owner out, and against the account from everywhere
# under a much higher ceiling (LOGIN_LIMIT_PER_ACCOUNT_GLOBAL, "none" = none) that bounds
# guessing from many addresses. Sign-up: each accepted submission counts against the IP.
def _login_checks(email: str) -> list[tuple[RateLimitItem, str, str]]:
    config = current_app.config
    ip = get_remote_address() or "-"
    checks = [
        (parse(config["LOGIN_LIMIT_PER_IP"]), "login-ip", ip),
        (parse(config["LOGIN_LIMIT_PER_ACCOUNT"]), "login-account-ip", f"{email}|{ip}"),
    ]
    ceiling = config.get("LOGIN_LIMIT_PER_ACCOUNT_GLOBAL") or "none"
    if ceiling.strip().lower() != "none":
        checks.append((parse(ceiling), "login-account", email))
    return checks


def _wait_for(checks: list[tuple[RateLimitItem, str, str]]) -> int | None:
    """Seconds to wait if any of ``checks`` (limit, namespace, key) is used up, else None."""
    if not limiter.enabled:
        return None
    for item, namespace, ident in checks:  # throttle.call: counted in memory if Redis is down
        if not throttle.call("test", item, namespace, ident):
            reset_at = throttle.call("get_window_stats", item, namespace, ident).reset_time
            return max(1, int(reset_at - time.time()))
    return None


def _hit(item: RateLimitItem, namespace: str, ident: str) -> None:
    if limiter.enabled:
        throttle.call("hit", item, namespace, ident)


def _throttled(email: str) -> int | None:
    return _wait_for(_login_checks(email))


def _record_attempt(email: str, *, failed: bool) -> None:
    per_ip, *per_account = _login_checks(email)
    _hit(*per_ip)
    if failed:
        for check in per_account:
            _hit(*check)


def _signup_limit() -> RateLimitItem:
    return parse(current_app.config["SIGNUP_LIMIT_PER_IP"])


def _signup_throttled() -> int | None:
    return _wait_for([(_signup_limit(), "signup-ip", get_remote_address() or "-")])


def _throttled_response(template: str, form, wait: int):
    response = current_app.make_response(
        (render_template(template, form=form, next=safe_next_url(request.args.get("next"))), 429)
    )
    response.headers["Retry-After"] = str(wait)
    return response


def _wait_words(seconds: int) -> str:
    if seconds < 90:
        return ngettext("%(num)d seconds", "%(num)d seconds", seconds)  # English says "1 seconds" (unchanged)
    minutes = round(seconds / 60)
    return ngettext("%(num)d minutes", "%(num)d minutes", minutes)


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
            flash(THROTTLED_MESSAGE % {"wait": _wait_words(wait)}, "error")
            return _throttled_response("auth/login.html", form, wait)
        user = accounts.authenticate(email, form.password.data)
        _record_attempt(email, failed=user is None)
        if user is not None:
            sign_in(user, remember=bool(form.remember.data))
            _heal_stripe_customer(user)
            flash(_("Welcome back, %(name)s.", name=user.name), "success")
            return redirect(_next_target())
        form.password.errors.append(_("That email and password don't match an account."))
        status = 401
    elif form.is_submitted():
        status = 400
    return render_template("auth/login.html", form=form, next=safe_next_url(request.args.get("next"))), status


@bp.post("/logout")
@login_required
def logout():
    form = PostForm()
    if form.validate_on_submit():
        sign_out()
        flash(_("You have been logged out."), "info")
    return redirect(url_for("shop.index"))


# --------------------------------------------------------------------------- mailed links
def _link_page(template: str, status: int = 200, **context):
    """A page reached through a mailed link (its token in the URL): never cached, never sent
    on as a Referer."""
    response = current_app.make_response((render_template(template, **context), status))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _link_invalid(err: accounts.AccountError):
    return _link_page("auth/link_invalid.html", 400, message=str(err))


def _reset_limits(email: str) -> tuple[tuple[RateLimitItem, str, str], tuple[RateLimitItem, str, str]]:
    config = current_app.config
    return (
        (parse(config["PASSWORD_RESET_LIMIT_PER_IP"]), "reset-ip", get_remote_address() or "-"),
        (parse(config["PASSWORD_RESET_LIMIT_PER_ACCOUNT"]), "reset-account", email),
    )


def _owe_reset(email: str) -> None:
    """Queue the look-up for every request, known address or not, so the answer and its timing
    are the same; the worker owes a mail only to an account (``account_mail``)."""
    try:
        jobs.enqueue(jobs.tasks.request_password_reset, email)
    except Exception:  # the queue is down: do it here (the answer still says the same)
        current_app.logger.warning("password reset: queue unavailable, handled in the request", exc_info=True)
        account_mail.request_password_reset(email)


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        email = normalize_email(form.email.data)
        per_ip, per_account = _reset_limits(email)
        wait = _wait_for([per_ip])
        if wait is not None:
            flash(RESET_THROTTLED_MESSAGE % {"wait": _wait_words(wait)}, "error")
            return _throttled_response("auth/forgot_password.html", form, wait)
        _hit(*per_ip)
        if _wait_for([per_account]) is None:  # over it: silently no more mail to that address
            _hit(*per_account)
            _owe_reset(email)
        flash(RESET_SENT_MESSAGE % {"email": email}, "info")
        return redirect(url_for("auth.login"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/forgot_password.html", form=form, next=None), status


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    try:
        user = account_mail.user_for_reset(token)
    except account_mail.LinkInvalid as err:
        return _link_invalid(err)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            user = account_mail.reset_password(token, form.password.data)
        except account_mail.LinkInvalid as err:
            return _link_invalid(err)
        except accounts.WeakPassword as err:
            form.password.errors.append(str(err))
        else:
            sign_in(user)
            flash(_("Your password has been changed and every other device signed out. You are logged in."), "success")
            return redirect(url_for("account.profile"))
    status = 400 if form.is_submitted() else 200
    return _link_page("auth/reset_password.html", status, form=form, token=token, email=user.email)


@bp.get("/verify-email/<token>")
def verify_email(token: str):
    try:
        account_mail.verify_email(token)
    except account_mail.LinkInvalid as err:
        return _link_invalid(err)
    flash(_("Thank you: your email address is confirmed."), "success")
    return redirect(url_for("account.profile" if current_user.is_authenticated else "auth.login"))
