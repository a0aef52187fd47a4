from __future__ import annotations

from flask import request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import ImmutableMultiDict
from wtforms import BooleanField, EmailField, PasswordField, StringField, ValidationError
from wtforms.validators import DataRequired, Email, EqualTo, Length

from ..services.accounts import MAX_PASSWORD_LENGTH, password_problems
from ..text import control_character


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class NoControlCharacters:
    """Refuses invisible and control characters (a reusable WTForms validator)."""

    def __init__(self, what: str = _l("This field"), *, allow_joiners: bool = True) -> None:
        self.what = what
        self.allow_joiners = allow_joiners

    def __call__(self, form, field):
        found = control_character(field.data if isinstance(field.data, str) else None, allow_joiners=self.allow_joiners)
        if found:
            raise ValidationError(
                gettext(
                    "%(what)s contains an invisible or control character (%(found)s); please retype it.",
                    what=self.what,
                    found=found,
                )
            )


class StrongPassword:
    """Runs the account rules; the other field names give context (email, name)."""

    def __call__(self, form, field):
        email = getattr(getattr(form, "email", None), "data", "") or ""
        name = getattr(getattr(form, "name", None), "data", "") or ""
        problems = password_problems(field.data or "", email=email, name=name)
        if problems:
            raise ValidationError(" ".join(problems))


class StoreForm(FlaskForm):
    """A FlaskForm whose fields only ever receive strings. Flask-WTF reads a JSON body as the
    form: a list or a number there raised, and numbers, lists or uploaded files reached the
    validators (500s). Now a JSON body counts only as an object's string values and files
    are ignored; anything else is an empty form (a 400 with the form's messages)."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if request and request.method in ("POST", "PUT", "PATCH", "DELETE"):
                if request.files:
                    return request.form
                if not request.form and request.is_json:
                    body = request.get_json(silent=True)
                    return ImmutableMultiDict(
                        [(key, value) for key, value in body.items() if isinstance(value, str)]
                        if isinstance(body, dict)
                        else []
                    )
            return super().wrap_formdata(form, formdata)


class SignupForm(StoreForm):
    email = EmailField(
        _l("Email"),
        filters=[_strip],
        validators=[
            DataRequired(_l("Enter your email address.")),
            NoControlCharacters(_l("Your email address"), allow_joiners=False),
            Email(_l("Enter a valid email address.")),
            Length(max=254),
        ],
    )
    name = StringField(
        _l("Name"),
        filters=[_strip],
        validators=[
            DataRequired(_l("Tell us your name.")),
            NoControlCharacters(_l("Your name")),
            Length(max=100, message=_l("Keep your name under 100 characters.")),
        ],
    )
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Choose a password.")), StrongPassword()])
    confirm = PasswordField(
        _l("Confirm password"),
        validators=[
            DataRequired(_l("Type your password again.")),
            EqualTo("password", message=_l("The two passwords don't match.")),
        ],
    )


class LoginForm(StoreForm):
    email = EmailField(
        _l("Email"),
        filters=[_strip],
        validators=[
            DataRequired(_l("Enter your email address.")),
            NoControlCharacters(_l("Your email address"), allow_joiners=False),
            Length(max=254),
        ],
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Enter your password.")), Length(max=MAX_PASSWORD_LENGTH)]
    )
    remember = BooleanField(_l("Keep me logged in on this device"))


class ChangePasswordForm(StoreForm):
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(_l("Enter your current password."))]
    )
    password = PasswordField(
        _l("New password"), validators=[DataRequired(_l("Choose a new password.")), StrongPassword()]
    )
    confirm = PasswordField(
        _l("Confirm new password"),
        validators=[
            DataRequired(_l("Type your new password again.")),
            EqualTo("password", message=_l("The two passwords don't match.")),
        ],
    )


class PostForm(StoreForm):
    """A form with nothing but the CSRF token (log out, buy buttons)."""


def _email_field(label: str, required: str) -> EmailField:
    return EmailField(
        label,
        filters=[_strip],
        validators=[
            DataRequired(required),
            NoControlCharacters(_l("The email address"), allow_joiners=False),
            Email(_l("Enter a valid email address.")),
            Length(max=254),
        ],
    )


class ForgotPasswordForm(StoreForm):
    email = _email_field(_l("Email"), _l("Enter the email address of your account."))


class ResetPasswordForm(StoreForm):
    password = PasswordField(
        _l("New password"), validators=[DataRequired(_l("Choose a new password.")), StrongPassword()]
    )
    confirm = PasswordField(
        _l("Confirm new password"),
        validators=[
            DataRequired(_l("Type your new password again.")),
            EqualTo("password", message=_l("The two passwords don't match.")),
        ],
    )


class ChangeEmailForm(StoreForm):
    new_email = _email_field(_l("New email address"), _l("Enter the new email address."))
    current_password = PasswordField(
        _l("Current password"),
        validators=[DataRequired(_l("Enter your current password.")), Length(max=MAX_PASSWORD_LENGTH)],
    )
