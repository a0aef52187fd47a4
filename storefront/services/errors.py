"""The one error family of the services: an action that cannot go ahead.

A :class:`ServiceError` carries a machine ``code`` (for JSON clients and tests), a ``message``
in words the buyer (or the admin) understands, and the HTTP ``status`` a view answers with.
Views do not catch it: ``web/errors.py`` turns it into the JSON error shape for the API, or a
flash of ``message`` and a redirect back for a form (see ``web.errors.redirect_on_error``).

Subclasses exist only where a caller needs to tell cases apart; everything else is a plain
``ServiceError`` with its own ``code``. :func:`unavailable` is the one translation of a
gateway error (Stripe down, refused, declined) into buyer words.
"""

from __future__ import annotations

from ..stripe_gateway import GatewayError


class ServiceError(Exception):
    """An action that cannot go ahead; ``message`` is safe to show, ``code`` is for machines."""

    #: defaults of the class; an instance may say otherwise
    code: str = "invalid_request"
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status})"


class NotFound(ServiceError):
    """What was asked for does not exist, or is not the caller's (we don't say which)."""

    code = "not_found"
    status = 404


class Conflict(ServiceError):
    """The request clashes with the current state (already owned, changed meanwhile…)."""

    code = "conflict"
    status = 409


class PaymentFailed(ServiceError):
    """The card was declined or needs another payment method."""

    code = "card_declined"
    status = 402


class TryAgain(ServiceError):
    """Our payment provider is not answering (or not configured): nothing happened, retry."""

    code = "payment_provider_unavailable"
    status = 503


#: the family member for a status, so that a caller may catch the kind (``except NotFound``)
_BY_STATUS: dict[int, type[ServiceError]] = {404: NotFound, 409: Conflict, 402: PaymentFailed, 503: TryAgain}


def unavailable(err: GatewayError, suffix: str = "") -> ServiceError:
    """The buyer's words for a gateway error (``suffix`` adds e.g. " Nothing was charged.").

    Keeps the gateway's ``code`` and status (a status below 400 becomes 502); the class follows
    the status: :class:`TryAgain` when Stripe is down (503), :class:`PaymentFailed` for a
    decline (402), :class:`NotFound` (404), else :class:`ServiceError`.
    """
    status = err.http_status if err.http_status >= 400 else 502
    cls = _BY_STATUS.get(status, ServiceError)
    return cls(err.user_message + suffix, code=err.code, status=status)
