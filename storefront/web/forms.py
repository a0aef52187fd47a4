from __future__ import annotations

from flask import request
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

    def __init__(self, what: str = "This field", *, allow_joiners: bool = True) -> None:
        self.what = what
        self.allow_joiners = allow_joiners

    def __call__(self, form, field):
        found = control_character(field.data if isinstance(field.data, str) else None, allow_joiners=self.allow_joiners)
        if found:
            raise ValidationError(
                f"{self.what} contains an invisible or control character ({found}); please retype it."
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
        "Email",
        filters=[_strip],
        validators=[
            DataRequired("Enter your email address."),
            NoControlCharacters("Your email address", allow_joiners=False),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    name = StringField(
        "Name",
        filters=[_strip],
        validators=[
            DataRequired("Tell us your name."),
            NoControlCharacters("Your name"),
            Length(max=100, message="Keep your name under 100 characters."),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired("Choose a password."), StrongPassword()])
    confirm = PasswordField(
        "Confirm password",
        validators=[
            DataRequired("Type your password again."),
            EqualTo("password", message="The two passwords don't match."),
        ],
    )


class LoginForm(StoreForm):
    email = EmailField(
        "Email",
        filters=[_strip],
        validators=[
            DataRequired("Enter your email address."),
            NoControlCharacters("Your email address", allow_joiners=False),
            Length(max=254),
        ],
    )
    password = PasswordField(
        "Password", validators=[DataRequired("Enter your password."), Length(max=MAX_PASSWORD_LENGTH)]
    )
    remember = BooleanField("Keep me logged in on this device")


class ChangePasswordForm(StoreForm):
    current_password = PasswordField("Current password", validators=[DataRequired("Enter your current password.")])
    password = PasswordField("New password", validators=[DataRequired("Choose a new password."), StrongPassword()])
    confirm = PasswordField(
        "Confirm new password",
        validators=[
            DataRequired("Type your new password again."),
            EqualTo("password", message="The two passwords don't match."),
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
            NoControlCharacters("The email address", allow_joiners=False),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )


class ForgotPasswordForm(StoreForm):
    email = _email_field("Email", "Enter the email address of your account.")


class ResetPasswordForm(StoreForm):
    password = PasswordField("New password", validators=[DataRequired("Choose a new password."), StrongPassword()])
    confirm = PasswordField(
        "Confirm new password",
        validators=[
            DataRequired("Type your new password again."),
            EqualTo("password", message="The two passwords don't match."),
        ],
    )


class ChangeEmailForm(StoreForm):
    new_email = _email_field("New email address", "Enter the new email address.")
    current_password = PasswordField(
        "Current password",
        validators=[DataRequired("Enter your current password."), Length(max=MAX_PASSWORD_LENGTH)],
    )
