"""Accounts: sign-up, authentication, passwords, admins and the user's Stripe customer."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import User, UserSession, utcnow
from ..models.user import normalize_email
from ..models.user_session import USER_AGENT_LENGTH, new_session_token
from ..stripe_gateway import GatewayError, get_gateway, idempotency_key
from ..text import control_character
from .errors import Conflict, ServiceError
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
COMMON_PASSWORDS = frozenset(
    {
        "password12",
        "password123",
        "password1234",
        "qwertyuiop",
        "1q2w3e4r5t",
        "iloveyou12",
        "letmein123",
        "welcome123",
        "abcdefghij",
        "abc1234567",
        "qwerty1234",
        "administrator",
        "passw0rd12",
        "changeme12",
        "football12",
        "baseball12",
        "monkey1234",
        "dragon1234",
        "sunshine12",
        "princess12",
        "trustno1234",
        "1234567890",
        "0987654321",
        "qwertyuiop1",
    }
)


class AccountError(ServiceError):
    """A rule about accounts was broken; the message (``str(err)``) is safe to show the user."""

    code = "invalid_account"


class EmailTaken(AccountError, Conflict):
    code = "email_taken"

    def __init__(self) -> None:
        super().__init__(_("An account with this email already exists. Try logging in instead."))


class WeakPassword(AccountError):
    code = "weak_password"


def password_problems(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Plain-words reasons why a password is too weak (empty list = fine)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(_("Use at least %(num)d characters.", num=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(_("Use at most %(num)d characters.", num=MAX_PASSWORD_LENGTH))
    if password.isdigit():
        problems.append(_("Don't use only digits; add some letters or symbols."))
    if password and len(set(password)) < 4:
        problems.append(_("Use more than a few different characters."))
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or re.fullmatch(r"(.)\1+|(0123456789|1234567890)+", lowered):
        problems.append(_("This password is too common; choose something less guessable."))
    local = normalize_email(email).split("@")[0]
    if local and len(local) >= 4 and lowered == local:
        problems.append(_("Don't use your email address as your password."))
    if name and lowered == name.strip().lower():
        problems.append(_("Don't use your name as your password."))
    return problems


def check_identity_text(email: str, name: str | None) -> None:
    """Names and emails are shown to admins and sent to Stripe: no invisible characters."""
    found = control_character(email, allow_joiners=False) or control_character(name)
    if found:
        raise AccountError(
            _("Names and email addresses can't contain invisible or control characters (%(found)s).", found=found)
        )


def email_exists(email: str) -> bool:
    return db.session.scalar(select(User.id).where(User.email == normalize_email(email))) is not None


def register_user(
    email: str, name: str, password: str, *, is_admin: bool = False, create_customer: bool = True
) -> User:
    """Create the account (one transaction), then try to create its Stripe customer.

    If Stripe is unavailable the account still exists; ``ensure_stripe_customer`` creates
    the customer the first time it is needed.
    """
    email = normalize_email(email)
    name = name.strip()
    check_identity_text(email, name)
    problems = password_problems(password, email=email, name=name)
    if problems:
        raise WeakPassword(" ".join(problems))
    if email_exists(email):
        raise EmailTaken()
    user = User(email=email, name=name, is_admin=is_admin)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        db.session.rollback()
        raise EmailTaken() from None
    if create_customer:
        try:
            ensure_stripe_customer(user)
        except GatewayError as err:
            log.warning("sign-up: Stripe customer for user %s deferred: %s", user.id, err.code)
    return user


def customer_idempotency_key(user: User) -> str:
    return idempotency_key("customer-create-user", user.id, user.public_id)


def ensure_stripe_customer(user: User) -> str:
    """Return the user's Stripe customer id, creating the customer if it doesn't exist yet.

    Never creates two customers for one user, even when called concurrently: the Stripe call
    carries a deterministic idempotency key (same user -> same customer), and the id is stored
    with ``UPDATE ... WHERE stripe_customer_id IS NULL``, so a late writer never overwrites an
    id that is already there. Fetch, then apply: no transaction is open while Stripe is asked,
    nor when this returns. Raises :class:`~storefront.stripe_gateway.GatewayError` if Stripe
    is unavailable.
    """
    if user.stripe_customer_id:
        read_then_release()
        return user.stripe_customer_id
    stored = db.session.scalar(select(User.stripe_customer_id).where(User.id == user.id))
    user_id, email, name, key = user.id, user.email, user.name, customer_idempotency_key(user)
    read_then_release()
    if stored is None:
        customer = get_gateway().create_customer(
            email=email, name=name, metadata={"user_id": str(user_id)}, idempotency_key=key
        )
        with unit_of_work():
            db.session.execute(
                update(User)
                .where(User.id == user_id, User.stripe_customer_id.is_(None))
                .values(stripe_customer_id=customer["id"])
            )
            stored = db.session.scalar(select(User.stripe_customer_id).where(User.id == user_id))
    if stored is None:  # pragma: no cover - the row was deleted meanwhile
        raise AccountError(_("This account no longer exists."))
    set_committed_value(user, "stripe_customer_id", stored)  # known now: no reload, no write
    return stored


def authenticate(email: str, password: str) -> User | None:
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        # Spend the same time as a real check so response time doesn't reveal accounts.
        _dummy_check(password)
        return None
    return user if user.check_password(password) else None


_DUMMY_HASH: list[str] = []


def _dummy_check(password: str) -> None:
    from werkzeug.security import check_password_hash, generate_password_hash

    if not _DUMMY_HASH:
        _DUMMY_HASH.append(generate_password_hash("not-a-real-password", method="scrypt"))
    check_password_hash(_DUMMY_HASH[0], password)


def change_password(user: User, current_password: str, new_password: str) -> None:
    """Set the new password and end every sign-in of the user, this one too: the caller signs
    this device in again (a new token, so a stolen copy of its cookies dies as well)."""
    if not user.check_password(current_password):
        raise AccountError(_("Your current password is not correct."))
    problems = password_problems(new_password, email=user.email, name=user.name)
    if problems:
        raise WeakPassword(" ".join(problems))
    if current_password == new_password:
        raise WeakPassword(_("Choose a password different from your current one."))
    user.set_password(new_password)
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    db.session.commit()
    user.sign_in = None


# --------------------------------------------------------------------------- sessions
# One ``UserSession`` row per sign-in (a device): the session and remember-me cookies carry its
# token in ``User.get_id()``, and a request is signed in only while the row exists.
_SESSION_ID = re.compile(r"([0-9]{1,18}):([A-Za-z0-9_-]{16,64}):([0-9]{1,12})")
#: a stamp this far in the future is refused (clock skew between workers is smaller)
_FUTURE_SKEW = 300


def sign_in_max_age(config: Mapping[str, Any]) -> timedelta:
    """How long one sign-in lasts at most: the remember-me cookie's life (30 days), or a
    session's if that were longer. The cookie's stamp and the row's age are both checked."""
    ages = [config["REMEMBER_COOKIE_DURATION"], config["PERMANENT_SESSION_LIFETIME"]]
    return max(age if isinstance(age, timedelta) else timedelta(seconds=age) for age in ages)


def start_session(user: User, *, max_age: timedelta, user_agent: str = "") -> UserSession:
    """Record a new sign-in of ``user`` (commits) and make it the one ``user.get_id()`` names.

    The user's sign-ins too old to be used any more are deleted on the way.
    """
    db.session.execute(
        delete(UserSession).where(UserSession.user_id == user.id, UserSession.created_at < utcnow() - max_age)
    )
    agent = "".join(ch for ch in user_agent if ch.isprintable())[:USER_AGENT_LENGTH]
    row = UserSession(user_id=user.id, token=new_session_token(), user_agent=agent)
    db.session.add(row)
    db.session.commit()
    user.sign_in = (row.token, int(time.time()))
    return row


def user_for_session(value: str, max_age: timedelta) -> User | None:
    """The user a session or remember-me cookie names, if that sign-in is still valid.

    ``value`` is ``User.get_id()`` as stored at sign-in: the user id, the sign-in's token and
    its time. One query: the user (with its eager-joined past-due subscription) joined to the
    sign-in's row, which log-out, a password change or an admin deletes, and which ends after
    ``max_age`` like the stamp.
    """
    parsed = parse_session_id(value, max_age)
    if parsed is None:
        return None
    user_id, token, signed_in_at = parsed
    user = db.session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(User.id == user_id, UserSession.token == token, UserSession.created_at >= utcnow() - max_age)
    )
    if user is not None:
        user.sign_in = (token, signed_in_at)
    return user


def parse_session_id(value: object, max_age: timedelta) -> tuple[int, str, int] | None:
    """(user id, sign-in token, signed in at) from a well-formed, unexpired ``User.get_id()``."""
    match = _SESSION_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    signed_in_at = int(match.group(3))
    age = time.time() - signed_in_at
    if age > max_age.total_seconds() or age < -_FUTURE_SKEW:
        return None
    return int(match.group(1)), match.group(2), signed_in_at


def end_session(user: User) -> None:
    """Log-out: this sign-in's row goes; the user's other devices stay signed in."""
    if user.sign_in is not None:
        db.session.execute(
            delete(UserSession).where(UserSession.user_id == user.id, UserSession.token == user.sign_in[0])
        )
        db.session.commit()
        user.sign_in = None


def end_sessions(user: User) -> None:
    """Sign the user out everywhere: every session and remember-me cookie stops working."""
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    db.session.commit()
    user.sign_in = None
    db.session.refresh(user)


def create_or_promote_admin(email: str, password: str | None, name: str | None) -> tuple[User, bool]:
    """Create an admin, or make an existing user admin. Returns (user, created)."""
    check_identity_text(email, name)
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is not None:
        user.is_admin = True
        if password:
            problems = password_problems(password, email=user.email, name=user.name)
            if problems:
                raise WeakPassword(" ".join(problems))
            user.set_password(password)
        if name:
            user.name = name
        db.session.commit()
        return user, False
    if not password:
        raise AccountError(_("A password is required to create a new admin."))
    user = register_user(email, name or email.split("@")[0], password, is_admin=True)
    return user, True
