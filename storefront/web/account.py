from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..services import accounts, points
from .auth import sign_in
from .forms import ChangePasswordForm
from .params import arg_id

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/")
@login_required
def profile():
    return render_template("account/profile.html", form=ChangePasswordForm())


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
            flash("Your password has been changed. Every other device has been signed out.", "success")
            return redirect(url_for("account.profile"))
    return render_template("account/profile.html", form=form), 400


@bp.get("/points")
@login_required
def points_history():
    before = arg_id("before")
    entries = points.history(current_user.id, limit=50, before_id=before)
    return render_template(
        "account/points.html", entries=entries, next_before=entries[-1].id if len(entries) == 50 else None
    )
