"""Stripe's error object, as the API answers it: ``{"error": {type, code, message, param, ...}}``."""

from __future__ import annotations


class StripeError(Exception):
    """Raised anywhere in the sandbox; rendered as Stripe's error JSON with ``status``."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        headers: dict | None = None,
        store_result: bool = False,
        **extra,
    ):
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.headers = headers or {}
        #: card errors happen after the request changed state: Stripe saves them for idempotent replay
        self.store_result = store_result
        self.extra = extra

    def body(self) -> dict:
        error = {"type": self.type, "message": self.message}
        for key in ("code", "param", "decline_code"):
            value = getattr(self, key)
            if value is not None:
                error[key] = value
        if self.code:
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        error.update({k: v for k, v in self.extra.items() if v is not None})
        return {"error": error}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing_param(param: str) -> StripeError:
    return invalid_request(f"Missing required param: {param}.", param=param, code="parameter_missing")


def no_such(kind: str, object_id: str, param: str = "id", *, status: int = 404) -> StripeError:
    """Stripe's ``resource_missing``: 404 for the object in the path, 400 for one a parameter
    names."""
    return invalid_request(f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=status)


def unexpected_state(message: str, param: str | None = None) -> StripeError:
    return invalid_request(message, param=param, code="unexpected_state")


def unauthorized(message: str) -> StripeError:
    return StripeError(401, "invalid_request_error", message)


def card_error(
    message: str, *, code: str, decline_code: str | None = None, param: str | None = None, **extra
) -> StripeError:
    return StripeError(
        402, "card_error", message, code=code, decline_code=decline_code, param=param, store_result=True, **extra
    )
