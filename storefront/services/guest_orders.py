"""Guest checkout (issue 14): a front end on another origin sells through
``POST /api/create-checkout-session`` with no account and no session.

* **Who bought it** -- nobody we know yet: the Checkout Session is created without a customer
  and without ``customer_email``, so Stripe Checkout asks the buyer for an address; the order
  (``user_id`` None) belongs to that address (``orders.buyer_email``, noted from the session's
  ``customer_details.email`` by :func:`.fulfilment.apply_checkout_session`, webhook or sync).
* **Paid** -- an account whose address is that one AND verified gets the points (or Lifetime)
  at once, exactly once (the ledger's per-order key). Otherwise the order is paid but unclaimed:
  the receipt goes to the address and says how to claim it.
* **Claimed** -- exactly once, when an account with that address is verified (the verification
  link, a password reset, which proves the address too, or the confirmation of an email change):
  :func:`claim_for`, called after that commit, takes each unclaimed paid order of the address
  under its row lock. An unverified account never claims: anyone can sign up with any address.
* **One-time prices only** -- a plan (a recurring price) answers 400
  ``subscription_not_supported`` (:func:`.purchase.price_for_stripe_id`). A subscription needs
  an account from its first day: its renewals are credited to the account owning the Stripe
  customer, plan changes and the billing portal act on that customer, and one account has one
  customer. A guest subscription would make a second customer that a later account would have
  to adopt, with renewals (and failed renewals) owed to nobody in between. A front end sells
  plans to signed-in buyers (same origin, session cookie + CSRF) or links to the store. The
  Lifetime plan is a one-time price and is sold to guests: the account gets it when paid or
  claimed (its subscription ended, as for a signed-in purchase). The store refuses a second
  Lifetime before Stripe for a signed-in buyer; a guest's address is only known once paid, so a
  second one is credited as paid and logged as a warning naming the order to refund.
* **Where Checkout sends the buyer back** -- :func:`return_urls`: a front end's own URLs when
  the web layer found their origin in ``API_CORS_ORIGINS``; else the store's pages, on
  ``STORE_URL`` (:func:`.mail.store_link`), never on a request's Host header.

Amounts come only from the catalog row; every Stripe write carries an idempotency key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode

from sqlalchemy import select

from ..extensions import db
from ..models import Order, Price, User
from ..models.order import COLLECTED, new_order_id
from ..stripe_gateway import GatewayError, get_gateway, idempotency_key
from . import fulfilment, orders, purchase
from .errors import ServiceError, unavailable
from .mail import store_link
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: what Stripe replaces with the session's id in a success URL
SESSION_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"

ReturnUrls = Callable[[str], tuple[str, str]]


# --- where Checkout sends the buyer back ------------------------------------------------------------


def with_query(url: str, name: str, value: str) -> str:
    """``url`` with ``name=value`` added to its query (before any fragment). ``value`` is put
    as is: Stripe's ``{CHECKOUT_SESSION_ID}`` must stay unescaped for Stripe to replace it."""
    base, hash_mark, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        joiner = ""
    return f"{base}{joiner}{name}={value}{hash_mark}{fragment}"


def front_end_success_url(url: str) -> str:
    """A front end's successUrl as Stripe gets it: ``session_id={CHECKOUT_SESSION_ID}`` added
    (kept as given if it already names the placeholder)."""
    return url if SESSION_PLACEHOLDER in url else with_query(url, "session_id", SESSION_PLACEHOLDER)


def return_urls(*, guest: bool, success_url: str | None, cancel_url: str | None) -> ReturnUrls:
    """``public_id -> (success_url, cancel_url)`` for a Checkout Session made through the API.

    ``success_url`` / ``cancel_url`` are a front end's, already checked by the caller (their
    origin is in ``API_CORS_ORIGINS``), or None for ours. A front end's cancel URL is reached
    through the store's cancel route (``guest.canceled``), which expires the session first, so
    the front end's page polling check-payment-status sees ``canceled``."""

    def build(public_id: str) -> tuple[str, str]:
        if success_url:
            success = front_end_success_url(success_url)
        elif guest:
            success = with_query(store_link("guest.status"), "session_id", SESSION_PLACEHOLDER)
        else:
            success = with_query(store_link("orders.show", public_id=public_id), "session_id", SESSION_PLACEHOLDER)
        if cancel_url:
            cancel = store_link("guest.canceled", public_id=public_id) + "?" + urlencode({"return_to": cancel_url})
        elif guest:
            cancel = store_link("guest.canceled", public_id=public_id)
        else:
            cancel = store_link("orders.checkout_canceled", public_id=public_id)
        return success, cancel

    return build


# --- starting a guest checkout ----------------------------------------------------------------------


def start_guest_checkout(price: Price, *, return_urls: ReturnUrls) -> tuple[Order, str]:
    """A Checkout Session for one unit of ``price`` (a one-time price, already checked by
    :func:`.purchase.price_for_stripe_id`) with no customer: Checkout collects the email. The
    order row is stored after Stripe answered (as :func:`.purchase.start_checkout`). Returns
    (order, the session's url)."""
    stripe_price_id = price.stripe_price_id
    if not stripe_price_id:
        raise ServiceError("That product is not available for Checkout yet.", code="price_not_found", status=404)
    public_id = new_order_id()
    metadata = {"order_id": public_id, "lookup_key": price.lookup_key, "guest": "true"}
    success, cancel = return_urls(public_id)
    read_then_release()  # what was read stays loaded; Stripe next, with no transaction open
    try:
        session = get_gateway().create_checkout_session(
            {
                "mode": "payment",
                "client_reference_id": public_id,
                "line_items": [{"price": stripe_price_id, "quantity": 1}],
                "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
                "success_url": success,
                "cancel_url": cancel,
            },
            idempotency_key=idempotency_key("order", public_id, "checkout-session"),
        )
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err
    order = purchase.new_order(
        None, price, public_id, "checkout", reason="guest checkout started", stripe_checkout_session_id=session["id"]
    )
    return order, session["url"]


def order_for_session(session_id: str) -> Order | None:
    """The order of a Checkout Session id (the buyer's capability: whoever holds it may see
    its status and leave it), fresh from Stripe when a sync is due."""
    if not session_id.startswith("cs_") or len(session_id) > 255:
        return None
    order = db.session.scalar(select(Order).where(Order.stripe_checkout_session_id == session_id))
    return purchase.sync_if_due(order) if order is not None else None


def leave_checkout(public_id: str) -> Order | None:
    """The buyer came back through Checkout's cancel URL: the session is expired so it can't be
    paid later and the order canceled (if it was paid meanwhile, that is recorded instead)."""
    order = db.session.scalar(select(Order).where(Order.public_id == public_id, Order.method == "checkout"))
    if order is None:
        return None
    return purchase.cancel_checkout(order)


# --- claiming --------------------------------------------------------------------------------------


def claim_for(user_id: int) -> int:
    """Give account ``user_id`` every paid guest order of its address, if that address is
    verified; call AFTER the commit that verified it (a payment committing meanwhile has either
    seen the address verified or is seen here). Each order in its own unit, under its lock:
    claimed once whoever else claims at the same time. Returns how many were claimed now."""
    row = db.session.execute(select(User.email, User.email_verified_at).where(User.id == user_id)).first()
    if row is None or row.email_verified_at is None:
        read_then_release()
        return 0
    email = row.email
    order_ids = db.session.scalars(
        select(Order.id)
        .where(Order.buyer_email == email, Order.user_id.is_(None), Order.status.in_(COLLECTED))
        .order_by(Order.id)
    ).all()
    claimed = 0
    for order_id in order_ids:
        with unit_of_work():
            order = orders.lock_order(order_id)
            if order.buyer_email == email and fulfilment.claim(order, user_id, source=f"claim:user:{user_id}"):
                claimed += 1
    read_then_release()
    if claimed:
        log.info("user %s claimed %s guest order(s)", user_id, claimed)
    return claimed
