from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from limits import parse

from ..services import account_mail, accounts, points
from .auth import _hit, _link_invalid, _link_page, _wait_for, _wait_words, sign_in
from .forms import ChangeEmailForm, ChangePasswordForm, PostForm
from .params import arg_id

bp = Blueprint("account", __name__, url_prefix="/account")


MAIL_THROTTLED_MESSAGE = _l("We sent you several mails already. Please wait %(wait)s before asking for another.")


def _profile(status: int = 200, *, form=None, email_form=None):
    return render_template(
        "account/profile.html",
        form=form or ChangePasswordForm(formdata=None),
        email_form=email_form or ChangeEmailForm(formdata=None),
        post_form=PostForm(formdata=None),
    ), status


@bp.get("/")
@login_required
def profile():
    return _profile()


def _mail_throttled() -> int | None:
    """Seconds to wait before this account may ask for another account mail, else None (and
    the request is counted)."""
    check = (parse(current_app.config["ACCOUNT_MAIL_LIMIT_PER_ACCOUNT"]), "account-mail", str(current_user.id))
    wait = _wait_for([check])
    if wait is None:
        _hit(*check)
    return wait


@bp.post("/verify-email")
@login_required
def resend_verification():
    form = PostForm()
    if form.validate_on_submit():
        if current_user.email_verified:
            flash(_("Your email address is confirmed already."), "info")
        elif (wait := _mail_throttled()) is not None:
            flash(MAIL_THROTTLED_MESSAGE % {"wait": _wait_words(wait)}, "error")
            return redirect(url_for("account.profile"), 303)
        else:
            account_mail.queue_verification(current_user._get_current_object())
            flash(
                _("We sent a new confirmation link to %(email)s. It works for 48 hours.", email=current_user.email),
                "success",
            )
    return redirect(url_for("account.profile"), 303)


@bp.post("/email")
@login_required
def change_email():
    form = ChangeEmailForm()
    if not form.validate_on_submit():
        return _profile(400, email_form=form)
    if (wait := _mail_throttled()) is not None:
        flash(MAIL_THROTTLED_MESSAGE % {"wait": _wait_words(wait)}, "error")
        return _profile(429, email_form=form)
    user = current_user._get_current_object()
    try:
        requested = account_mail.request_email_change(user, form.current_password.data, form.new_email.data)
    except account_mail.NotVerified as err:
        flash(str(err), "error")
        return _profile(403, email_form=form)
    except accounts.EmailTaken as err:
        form.new_email.errors.append(str(err))
        return _profile(409, email_form=form)
    except accounts.AccountError as err:
        field = form.current_password if "password" in str(err) else form.new_email
        field.errors.append(str(err))
        return _profile(400, email_form=form)
    flash(
        _(
            "We sent a confirmation link to %(email)s. Your address changes when you click it "
            "(within 48 hours); until then you keep using the current one.",
            email=requested.new_email,
        ),
        "success",
    )
    return redirect(url_for("account.profile"), 303)


@bp.route("/email/confirm/<token>", methods=["GET", "POST"])
def confirm_email_change(token: str):
    """The link mailed to the new address: a page with one button (a mail scanner fetching the
    link changes nothing), which makes the change; no sign-in needed (the link is the proof)."""
    try:
        user, new_email = account_mail.pending_email_change(token)
    except account_mail.LinkInvalid as err:
        return _link_invalid(err)
    form = PostForm()
    if form.validate_on_submit():
        try:
            account_mail.confirm_email_change(token)
        except (account_mail.LinkInvalid, accounts.EmailTaken) as err:
            return _link_invalid(err)
        flash(_("Your email address is now %(email)s.", email=new_email), "success")
        return redirect(url_for("account.profile" if current_user.is_authenticated else "auth.login"), 303)
    status = 400 if form.is_submitted() else 200
    return _link_page("account/confirm_email_change.html", status, form=form, new_email=new_email, old_email=user.email)


@bp.post("/password")
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.password.data)
        except accounts.WeakPassword as err:
            form.password.errors.append(str(err))
        except accounts.AccountError as err:
            form.current_password.errors.append(str(err))
        else:
            # Every sign-in of the user ended; this device carries on with a new one.
            remember = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies
            sign_in(current_user._get_current_object(), remember=remember)
            flash(_("Your password has been changed. Every other device has been signed out."), "success")
            return redirect(url_for("account.profile"))
    return _profile(400, form=form)


@bp.get("/points")
@login_required
def points_history():
    before = arg_id("before")
    entries = points.history(current_user.id, limit=50, before_id=before)
    return render_template(
        "account/points.html", entries=entries, next_before=entries[-1].id if len(entries) == 50 else None
    )
