from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..services import accounts
from .forms import ChangePasswordForm

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
            flash("Your password has been changed.", "success")
            return redirect(url_for("account.profile"))
    return render_template("account/profile.html", form=form), 400
