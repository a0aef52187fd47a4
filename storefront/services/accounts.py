"""Accounts: sign-up, authentication, passwords, admins and the user's Stripe customer."""
from __future__ import annotations

import hmac
import logging
import re
import time
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import User
from ..models.user import new_session_token, normalize_email
from ..stripe_gateway import GatewayError, get_gateway, idempotency_key
from ..text import control_character

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
COMMON_PASSWORDS = frozenset({
    "password12", "password123", "password1234", "qwertyuiop", "1q2w3e4r5t", "iloveyou12",
    "letmein123", "welcome123", "abcdefghij", "abc1234567", "qwerty1234", "administrator",
    "passw0rd12", "changeme12", "football12", "baseball12", "monkey1234", "dragon1234",
    "sunshine12", "princess12", "trustno1234", "1234567890", "0987654321", "qwertyuiop1",
})


class AccountError(Exception):
    """A rule about accounts was broken; ``str(err)`` is safe to show the user."""


class EmailTaken(AccountError):
    def __init__(self) -> None:
        super().__init__("An account with this email already exists. Try logging in instead.")


class WeakPassword(AccountError):
    pass


def password_problems(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Plain-words reasons why a password is too weak (empty list = fine)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    if password.isdigit():
        problems.append("Don't use only digits; add some letters or symbols.")
    if password and len(set(password)) < 4:
        problems.append("Use more than a few different characters.")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or re.fullmatch(r"(.)\1+|(0123456789|1234567890)+", lowered):
        problems.append("This password is too common; choose something less guessable.")
    local = normalize_email(email).split("@")[0]
    if local and len(local) >= 4 and lowered == local:
        problems.append("Don't use your email address as your password.")
    if name and lowered == name.strip().lower():
        problems.append("Don't use your name as your password.")
    return problems


def check_identity_text(email: str, name: str | None) -> None:
    """Names and emails are shown to admins and sent to Stripe: no invisible characters."""
    found = control_character(email, allow_joiners=False) or control_character(name)
    if found:
        raise AccountError(f"Names and email addresses can't contain invisible or control "
                           f"characters ({found}).")


def email_exists(email: str) -> bool:
    return db.session.scalar(select(User.id).where(User.email == normalize_email(email))) is not None


def register_user(email: str, name: str, password: str, *, is_admin: bool = False,
                  create_customer: bool = True) -> User:
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

    Never creates two customers for one user, even when called concurrently:
    * the Stripe call carries a deterministic idempotency key (same user -> same customer);
    * on PostgreSQL the user row is locked (``SELECT ... FOR UPDATE``) for the duration;
    * everywhere, the id is stored with ``UPDATE ... WHERE stripe_customer_id IS NULL``
      so a late writer never overwrites an id that is already there.
    Raises :class:`~storefront.stripe_gateway.GatewayError` if Stripe is unavailable.
    """
    if user.stripe_customer_id:
        return user.stripe_customer_id
    user_id = user.id
    is_postgres = db.session.get_bind().dialect.name == "postgresql"
    try:
        stmt = select(User).where(User.id == user_id)
        if is_postgres:
            stmt = stmt.with_for_update(of=User)  # not the eager-joined subscription
        locked = db.session.execute(stmt.execution_options(populate_existing=True)).scalar_one()
        if locked.stripe_customer_id:
            db.session.commit()
            return locked.stripe_customer_id
        customer = get_gateway().create_customer(
            email=locked.email,
            name=locked.name,
            metadata={"user_id": str(locked.id)},
            idempotency_key=customer_idempotency_key(locked),
        )
        db.session.execute(
            update(User)
            .where(User.id == user_id, User.stripe_customer_id.is_(None))
            .values(stripe_customer_id=customer["id"])
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    db.session.refresh(user)
    return user.stripe_customer_id  # type: ignore[return-value]


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
    if not user.check_password(current_password):
        raise AccountError("Your current password is not correct.")
    problems = password_problems(new_password, email=user.email, name=user.name)
    if problems:
        raise WeakPassword(" ".join(problems))
    if current_password == new_password:
        raise WeakPassword("Choose a password different from your current one.")
    user.set_password(new_password)
    user.session_token = new_session_token()  # every other device is signed out
    db.session.commit()


# --------------------------------------------------------------------------- sessions
_SESSION_ID = re.compile(r"([0-9]{1,18}):([A-Za-z0-9_-]{16,64}):([0-9]{1,12})")
#: a stamp this far in the future is refused (clock skew between workers is smaller)
_FUTURE_SKEW = 300


def user_for_session(value: str, max_age: timedelta) -> User | None:
    """The user a session or remember-me cookie names, if that sign-in is still valid.

    ``value`` is ``User.get_id()`` as stored at sign-in: the user id, the user's session
    token then, and the sign-in time. A renewed token (log-out, password change, an admin
    ending the sessions) or a sign-in older than ``max_age`` ends it.
    """
    parsed = parse_session_id(value, max_age)
    if parsed is None:
        return None
    user = db.session.get(User, parsed[0])
    if user is None or not same_token(user.session_token, parsed[1]):
        return None
    return user


def parse_session_id(value: object, max_age: timedelta) -> tuple[int, str] | None:
    """(user id, session token) from a well-formed, unexpired ``User.get_id()`` value."""
    match = _SESSION_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    age = time.time() - int(match.group(3))
    if age > max_age.total_seconds() or age < -_FUTURE_SKEW:
        return None
    return int(match.group(1)), match.group(2)


def same_token(expected: str | None, given: str) -> bool:
    return expected is not None and hmac.compare_digest(expected.encode(), given.encode())


def end_sessions(user: User) -> None:
    """Sign the user out everywhere: every session and remember-me cookie stops working."""
    db.session.execute(update(User).where(User.id == user.id)
                       .values(session_token=new_session_token()))
    db.session.commit()
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
        raise AccountError("A password is required to create a new admin.")
    user = register_user(email, name or email.split("@")[0], password, is_admin=True)
    return user, True
