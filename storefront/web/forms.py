from __future__ import annotations

import unicodedata

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField, ValidationError
from wtforms.validators import DataRequired, Email, EqualTo, Length

from ..services.accounts import MAX_PASSWORD_LENGTH, password_problems


def _strip(value):
    return value.strip() if isinstance(value, str) else value


#: Unicode categories never fit for a name or an email: controls (NUL, newlines, escapes),
#: format characters (bidi overrides and isolates U+202A-202E, U+2066-2069, zero-width
#: spaces, BOM), line/paragraph separators, surrogates, private use and unassigned points.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: zero-width (non-)joiners: category Cf, but part of correct spelling in Persian, Hindi, ...
_JOINERS = frozenset({"\u200c", "\u200d"})


def control_character(text: str | None, *, allow_joiners: bool = True) -> str | None:
    """The first character of ``text`` that must not be stored (as ``U+XXXX``), or None."""
    for char in text or "":
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            if allow_joiners and char in _JOINERS:
                continue
            return f"U+{ord(char):04X}"
    return None


class NoControlCharacters:
    """Refuses invisible and control characters (a reusable WTForms validator)."""

    def __init__(self, what: str = "This field", *, allow_joiners: bool = True) -> None:
        self.what = what
        self.allow_joiners = allow_joiners

    def __call__(self, form, field):
        found = control_character(field.data if isinstance(field.data, str) else None,
                                  allow_joiners=self.allow_joiners)
        if found:
            raise ValidationError(f"{self.what} contains an invisible or control character "
                                  f"({found}); please retype it.")


class StrongPassword:
    """Runs the account rules; the other field names give context (email, name)."""

    def __call__(self, form, field):
        email = getattr(getattr(form, "email", None), "data", "") or ""
        name = getattr(getattr(form, "name", None), "data", "") or ""
        problems = password_problems(field.data or "", email=email, name=name)
        if problems:
            raise ValidationError(" ".join(problems))


class SignupForm(FlaskForm):
    email = EmailField("Email", filters=[_strip], validators=[
        DataRequired("Enter your email address."),
        NoControlCharacters("Your email address", allow_joiners=False),
        Email("Enter a valid email address."), Length(max=254)])
    name = StringField("Name", filters=[_strip], validators=[
        DataRequired("Tell us your name."), NoControlCharacters("Your name"),
        Length(max=100, message="Keep your name under 100 characters.")])
    password = PasswordField("Password", validators=[
        DataRequired("Choose a password."), StrongPassword()])
    confirm = PasswordField("Confirm password", validators=[
        DataRequired("Type your password again."),
        EqualTo("password", message="The two passwords don't match.")])


class LoginForm(FlaskForm):
    email = EmailField("Email", filters=[_strip], validators=[
        DataRequired("Enter your email address."),
        NoControlCharacters("Your email address", allow_joiners=False), Length(max=254)])
    password = PasswordField("Password", validators=[
        DataRequired("Enter your password."), Length(max=MAX_PASSWORD_LENGTH)])
    remember = BooleanField("Keep me logged in on this device")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired("Enter your current password.")])
    password = PasswordField("New password", validators=[DataRequired("Choose a new password."), StrongPassword()])
    confirm = PasswordField("Confirm new password", validators=[
        DataRequired("Type your new password again."),
        EqualTo("password", message="The two passwords don't match.")])


class PostForm(FlaskForm):
    """A form with nothing but the CSRF token (log out, buy buttons)."""
