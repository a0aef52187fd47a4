"""The account mails (issue 13): verify the address, reset the password, change the email.

Each flow owes a mail through :mod:`.mail` (the outbox) and answers a signed link from it:

* **Verify the address** -- at sign-up and on "Send the link again": a link valid 48 hours that
  sets ``users.email_verified_at``. It names the user and the address it was sent to, so it dies
  when the address changes. Unverified accounts can buy; what depends on owning the address
  (changing it, claiming orders: ``User.email_verified``) waits for it.
* **Password reset** -- "Forgot password?": the same answer whether or not the address has an
  account (the web layer queues :func:`request_password_reset` for every request, so the
  answer's timing doesn't depend on it either; nothing is owed for an unknown address). The link
  is valid 1 hour and single-use: it carries a fingerprint of the password hash (and address),
  and using it changes the hash. Using it ends every sign-in of the account, and proves the
  address, so it verifies it too.
* **Change the email** -- with the current password, from a verified address: a confirmation
  link (48 hours) to the NEW address, which makes the change when clicked, and a notice to the
  old one. The new address must be nobody else's, when asked and when confirmed; the link dies
  if the address or the password changed meanwhile.

Links are signed (itsdangerous, ``SECRET_KEY``, one salt per purpose) at SEND time by each
kind's build step: the outbox row holds ids and addresses only, never a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..i18n import N_
from ..models import User, UserSession, utcnow
from ..models.user import normalize_email
from ..stripe_gateway import GatewayError, get_gateway, idempotency_key
from . import accounts, guest_orders, mail
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

VERIFY_MAX_AGE = timedelta(hours=48)
RESET_MAX_AGE = timedelta(hours=1)
EMAIL_CHANGE_MAX_AGE = timedelta(hours=48)

VERIFY_KIND = "verify_email"
RESET_KIND = "password_reset"
CHANGE_CONFIRM_KIND = "email_change_confirm"
CHANGE_NOTICE_KIND = "email_change_notice"

_SALTS = {
    VERIFY_KIND: "storefront.mail.verify-email.v1",
    RESET_KIND: "storefront.mail.password-reset.v1",
    CHANGE_CONFIRM_KIND: "storefront.mail.email-change.v1",
}


class LinkInvalid(accounts.AccountError):
    """A link that is forged, expired, used already, or for an address that changed."""

    code = "link_invalid"


class NotVerified(accounts.AccountError):
    code = "email_not_verified"
    status = 403


# --- tokens -------------------------------------------------------------------------------------------


def _serializer(kind: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALTS[kind])


def _fingerprint(user: User) -> str:
    """Changes whenever the password (its salted hash) or the address does: binds a reset or
    email-change link to the account as it was when the link was made. A keyed digest, so
    the token (readable base64) reveals nothing of the hash."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(key, f"{user.password_hash}\n{user.email}".encode(), hashlib.sha256)
    return digest.hexdigest()[:24]


USED_OR_STALE = "This link was used already or is no longer valid. Ask for a new one."


def _check_fingerprint(payload: dict[str, Any], user: User | None) -> User:
    """``user``, if the link's fingerprint is still the account's (else :class:`LinkInvalid`)."""
    if user is None or not hmac.compare_digest(str(payload.get("f", "")), _fingerprint(user)):
        raise LinkInvalid(USED_OR_STALE)
    return user


def _locked(user_id: int) -> User | None:
    """The user's row, read afresh and locked for the rest of the unit (PostgreSQL): two uses of
    one link at once run one after the other, and the second sees the first's change."""
    return db.session.get(User, user_id, with_for_update={"of": User}, populate_existing=True)


def make_token(kind: str, payload: dict[str, Any]) -> str:
    return _serializer(kind).dumps(payload)


def _load(kind: str, token: str, max_age: timedelta) -> dict[str, Any]:
    try:
        payload = _serializer(kind).loads(token, max_age=int(max_age.total_seconds()))
    except SignatureExpired:
        raise LinkInvalid("This link has expired. Ask for a new one.") from None
    except BadSignature:
        raise LinkInvalid("This link is not valid. Ask for a new one.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), int):
        raise LinkInvalid("This link is not valid. Ask for a new one.")
    return payload


def _nonce() -> str:
    return secrets.token_urlsafe(9)


def _user(user_id: Any) -> User:
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None:
        raise mail.Drop("the account no longer exists")
    return user


# --- send-time build steps (run by the queue's worker) --------------------------------------------


def _build_verify(context: dict[str, Any]) -> dict[str, Any]:
    user = _user(context.get("user_id"))
    if user.email != context.get("email"):
        raise mail.Drop("the address changed since")
    if user.email_verified:
        raise mail.Drop("the address is verified already")
    token = make_token(VERIFY_KIND, {"u": user.id, "e": user.email})
    return {"verify_url": mail.store_link("auth.verify_email", token=token), "valid_hours": 48}


def _build_reset(context: dict[str, Any]) -> dict[str, Any]:
    user = _user(context.get("user_id"))
    if user.email != context.get("email"):
        raise mail.Drop("the address changed since")
    token = make_token(RESET_KIND, {"u": user.id, "f": _fingerprint(user)})
    return {
        "reset_url": mail.store_link("auth.reset_password", token=token),
        "forgot_url": mail.store_link("auth.forgot_password"),
        "valid_minutes": 60,
    }


def _build_change_confirm(context: dict[str, Any]) -> dict[str, Any]:
    user = _user(context.get("user_id"))
    new_email = str(context.get("new_email") or "")
    if user.email != context.get("old_email"):
        raise mail.Drop("the address changed since")
    if accounts.email_exists(new_email):
        raise mail.Drop("the new address belongs to an account now")
    token = make_token(CHANGE_CONFIRM_KIND, {"u": user.id, "n": new_email, "f": _fingerprint(user)})
    return {"confirm_url": mail.store_link("account.confirm_email_change", token=token), "valid_hours": 48}


def _build_change_notice(context: dict[str, Any]) -> dict[str, Any]:
    return {"forgot_url": mail.store_link("auth.forgot_password")}


mail.register_kind(VERIFY_KIND, N_("Confirm your email address for {store_name}"), "verify_email", _build_verify)
mail.register_kind(RESET_KIND, N_("Reset your {store_name} password"), "password_reset", _build_reset)
mail.register_kind(
    CHANGE_CONFIRM_KIND,
    N_("Confirm your new email address for {store_name}"),
    "email_change_confirm",
    _build_change_confirm,
)
mail.register_kind(
    CHANGE_NOTICE_KIND,
    N_("Your email address at {store_name} is changing"),
    "email_change_notice",
    _build_change_notice,
)


# --- verification ------------------------------------------------------------------------------------


def queue_verification(user: User) -> bool:
    """Owe ``user`` a verification link (its own unit of work); False if verified already."""
    if user.email_verified:
        return False
    return _owe_link(VERIFY_KIND, "verify", user)


def verify_email(token: str) -> User:
    """Mark the address the link was sent to verified (again: no change). Raises
    :class:`LinkInvalid` for a bad or expired link, or one for an address no longer the user's."""
    payload = _load(VERIFY_KIND, token, VERIFY_MAX_AGE)
    with unit_of_work():
        user = db.session.get(User, payload["u"])
        if user is None or user.email != payload.get("e"):
            raise LinkInvalid("This link is for an address that is no longer the account's. Ask for a new one.")
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
    guest_orders.claim_for(user.id)  # after the commit: paid guest orders of the address are the account's now
    return user


# --- password reset ----------------------------------------------------------------------------------


def request_password_reset(email: str) -> bool:
    """Owe the account at ``email`` a reset link; nothing for an unknown address (the caller
    answers the same either way). True if a mail was queued."""
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        db.session.rollback()
        return False
    return _owe_link(RESET_KIND, "reset", user)


def _owe_link(kind: str, purpose: str, user: User) -> bool:
    """Owe ``user`` a mail of ``kind`` carrying a link (signed when it is sent), in its own
    unit of work; each request is a new mail (a nonce in its ``about``)."""
    user_id, address, name = user.id, user.email, user.name
    with unit_of_work():
        return mail.queue_mail(
            kind,
            to=address,
            about=f"user:{user_id}:{purpose}:{_nonce()}",
            context={"user_id": user_id, "email": address, "name": name},
            user_id=user_id,
        )


def user_for_reset(token: str) -> User:
    """The account a reset link is for, if the link is still good (valid, unexpired, unused)."""
    payload = _load(RESET_KIND, token, RESET_MAX_AGE)
    try:
        return _check_fingerprint(payload, db.session.get(User, payload["u"]))
    finally:
        read_then_release()  # the read ends; what it read stays loaded


def reset_password(token: str, new_password: str) -> User:
    """Set the new password through a reset link: the link dies (the hash changes), every
    sign-in of the account ends (the caller signs this device in anew), the address counts as
    verified (the link reached it)."""
    user = user_for_reset(token)
    problems = accounts.password_problems(new_password, email=user.email, name=user.name)
    if problems:
        db.session.rollback()
        raise accounts.WeakPassword(" ".join(problems))
    with unit_of_work():
        user = _check_fingerprint(_load(RESET_KIND, token, RESET_MAX_AGE), _locked(user.id))
        user.set_password(new_password)
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
        db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    user.sign_in = None
    guest_orders.claim_for(user.id)  # the link reached the address: it is verified
    return user


# --- email change ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRequested:
    new_email: str


def request_email_change(user: User, password: str, new_email: str) -> ChangeRequested:
    """Owe a confirmation link to ``new_email`` and a notice to the current address. Needs the
    current password and a verified address; the new address must be free."""
    new_email = normalize_email(new_email)
    accounts.check_identity_text(new_email, None)
    if not user.check_password(password):
        raise accounts.AccountError("Your current password is not correct.")
    if not user.email_verified:
        raise NotVerified("Verify your current email address first: we sent you a link when you signed up.")
    if new_email == user.email:
        raise accounts.AccountError("That is already your email address.")
    if accounts.email_exists(new_email):
        raise accounts.EmailTaken()
    user_id, old_email, name = user.id, user.email, user.name
    about = f"user:{user_id}:email-change:{_nonce()}"
    context = {"user_id": user_id, "old_email": old_email, "new_email": new_email, "name": name}
    with unit_of_work():
        mail.queue_mail(CHANGE_CONFIRM_KIND, to=new_email, about=about, context=context, user_id=user_id)
        mail.queue_mail(CHANGE_NOTICE_KIND, to=old_email, about=about, context=context, user_id=user_id)
    return ChangeRequested(new_email)


def pending_email_change(token: str) -> tuple[User, str]:
    """(the account, its new address) of a confirmation link that is still good."""
    payload = _load(CHANGE_CONFIRM_KIND, token, EMAIL_CHANGE_MAX_AGE)
    new_email = normalize_email(str(payload.get("n") or ""))
    try:
        user = _check_fingerprint(payload, db.session.get(User, payload["u"]))
    finally:
        read_then_release()  # the read ends; what it read stays loaded
    if not new_email:
        raise LinkInvalid(USED_OR_STALE)
    return user, new_email


def confirm_email_change(token: str) -> User:
    """Make the change a confirmation link asked for: the new address, verified (the link
    reached it). Refused if it belongs to another account by now."""
    user, new_email = pending_email_change(token)
    if accounts.email_exists(new_email):
        db.session.rollback()
        raise accounts.EmailTaken()
    try:
        with unit_of_work():  # checked again on the locked row: one use, even when clicked twice at once
            user = _check_fingerprint(_load(CHANGE_CONFIRM_KIND, token, EMAIL_CHANGE_MAX_AGE), _locked(user.id))
            user.email = new_email
            user.email_verified_at = utcnow()
    except IntegrityError:  # another account took it a moment ago
        raise accounts.EmailTaken() from None
    guest_orders.claim_for(user.id)  # paid guest orders of the new (verified) address
    _tell_stripe(user)
    return user


def _tell_stripe(user: User) -> None:
    """Best effort, after the commit: the Stripe customer gets the new address too (Stripe's
    invoices and Checkout use it). A failure is logged; the store's own mails use ours."""
    user_id, customer_id, email = user.id, user.stripe_customer_id, user.email
    read_then_release()
    if not customer_id:
        return
    key = idempotency_key("customer-email", user_id, secrets.token_hex(8))  # A -> B -> A is two writes
    try:
        get_gateway().update_customer_email(customer_id, email, idempotency_key=key)
    except GatewayError as err:
        log.warning("email change: Stripe customer %s keeps the old address: %s", customer_id, err.code)
