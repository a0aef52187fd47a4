"""Request parameters: Stripe's form encoding decoded, then checked against the official SDK.

Stripe encodes nested parameters in form keys: ``metadata[order_id]=7``,
``line_items[0][price]=price_1``, ``expand[]=customer``. :func:`decode` turns such pairs into
nested dicts and lists. :func:`validate` then walks the result against the request TypedDict that
stripe-python generates from Stripe's OpenAPI description (``stripe.params.CustomerCreateParams``
…): an unknown key is refused with Stripe's ``parameter_unknown``; values are coerced to the
declared types (form values arrive as strings); and a key Stripe knows but this sandbox does not
implement is refused with ``parameter_unsupported`` instead of being silently ignored.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any

import stripe.params  # the SDK's request schema; the sandbox uses it only as a schema

from .errors import invalid_request

_KEY_PART = re.compile(r"\[([^\[\]]*)\]")
_NONE = type(None)
_REQUEST_OPTIONS = {
    "api_key",
    "idempotency_key",
    "stripe_account",
    "stripe_context",
    "stripe_version",
    "headers",
    "base_address",
}


def _split_key(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    parts = [head]
    if rest:
        parts.extend(_KEY_PART.findall("[" + rest))
    return parts


def decode(pairs: Iterable[tuple[str, str]]) -> dict:
    """Form pairs -> nested dicts; ``[]`` appends, all-numeric keys become lists."""
    root: dict = {}
    for key, value in pairs:
        parts = _split_key(key)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # key[] -> append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise invalid_request(f"Invalid nested parameter: {key}", param=key)
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


# --- schema lookup -------------------------------------------------------------------------


@functools.cache
def params_class(name: str | type) -> type:
    """``"CustomerCreateParams"`` or ``"checkout.SessionCreateParams"`` -> the TypedDict.

    A TypedDict class itself is accepted too: an SDK TypedDict extended with what Stripe.js
    sends but the server-side SDK never does (``client_secret`` on a publishable confirm)."""
    if isinstance(name, type):
        return name
    module = stripe.params
    *pkg, cls = name.split(".")
    if pkg:
        module = importlib.import_module("stripe.params." + ".".join(pkg))
    return getattr(module, cls)


@functools.cache
def _hints(cls: type) -> dict:
    """Field name -> (annotation, module namespace to resolve its forward references in)."""
    hints = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ == "stripe._request_options":
            continue
        namespace = vars(sys.modules[klass.__module__])
        for key, annotation in vars(klass).get("__annotations__", {}).items():
            if key not in _REQUEST_OPTIONS:
                hints[key] = (annotation, namespace)
    return hints


def _strip(tp, ns):
    """Resolve forward references and unwrap NotRequired[X] / Required[X] -> X."""
    while True:
        if isinstance(tp, typing.ForwardRef):
            tp = tp.__forward_arg__
        if isinstance(tp, str):
            tp = eval(tp, dict(ns))  # noqa: S307 - SDK-generated annotation text
            continue
        if typing.get_origin(tp) in (typing.NotRequired, typing.Required):
            tp = typing.get_args(tp)[0]
            continue
        return tp


def _is_typeddict(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


# --- what only Stripe.js sends -------------------------------------------------------------


class BrowserMandateOnline(typing.TypedDict, total=False):
    """Stripe.js asks Stripe to take the IP address and user agent from the browser's request
    (``infer_from_client``); the server-side SDK must send them itself."""

    infer_from_client: bool
    ip_address: str
    user_agent: str


class BrowserCustomerAcceptance(typing.TypedDict, total=False):
    type: typing.Required[typing.Literal["online", "offline"]]
    online: BrowserMandateOnline
    accepted_at: int


class BrowserMandateData(typing.TypedDict, total=False):
    customer_acceptance: typing.Required[BrowserCustomerAcceptance]


def browser_confirm_params(confirm: type, payment_method_data: type) -> type:
    """The SDK's confirm TypedDict (PaymentIntent or SetupIntent) extended with what Stripe.js
    sends with a publishable key: the intent's ``client_secret``, raw card details in
    ``payment_method_data[card]``, and ``mandate_data`` with ``infer_from_client``."""
    from stripe.params import PaymentMethodCreateParamsCard

    # Built with types.new_class: a static `class X(base, total=False)` needs a base the type
    # checker knows as a TypedDict, and these bases are chosen at run time.
    BrowserPaymentMethodData = types.new_class("BrowserPaymentMethodData", (payment_method_data,), {"total": False})
    BrowserConfirmParams = types.new_class("BrowserConfirmParams", (confirm,), {"total": False})

    # A TypedDict subclass carries its parents' annotations as the SDK wrote them (text):
    # resolve them in the SDK's module; the added fields are real types.
    BrowserPaymentMethodData.__module__ = payment_method_data.__module__
    BrowserConfirmParams.__module__ = confirm.__module__
    BrowserPaymentMethodData.__annotations__["card"] = typing.NotRequired[PaymentMethodCreateParamsCard]
    BrowserConfirmParams.__annotations__.update(
        client_secret=typing.NotRequired[str],
        mandate_data=typing.NotRequired[BrowserMandateData],
        payment_method_data=typing.NotRequired[BrowserPaymentMethodData],
    )
    return BrowserConfirmParams


# --- validation ----------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


def _coerce(value: Any, tp, path: str, ns) -> Any:
    tp = _strip(tp, ns)
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not _NONE]
        # '' means "unset" where the schema allows Literal['']
        problems = []
        for opt in sorted(options, key=_union_order):
            try:
                return _coerce(value, opt, path, ns)
            except _Invalid as exc:
                problems.append(exc)
        raise problems[-1] if problems else _Invalid(f"Invalid value for {path}.", path)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        raise _Invalid(f"Invalid {path}: must be one of {', '.join(map(str, allowed))}", path)
    if origin is list:  # typing.List[...] has origin list too
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, dict):  # sparse indexes
            value = list(value.values())
        if not isinstance(value, list):
            raise _Invalid(f"Invalid array for {path}.", path)
        return [_coerce(v, item, f"{path}[{i}]", ns) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(f"Invalid object for {path}.", path)
        return dict(value)
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            raise _Invalid(f"Invalid object for {path}.", path)
        return _validate_dict(value, tp, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise _Invalid(f"Invalid boolean: {value}", path)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        raise _Invalid(f"Invalid integer: {value}", path)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _Invalid(f"Invalid decimal: {value}", path) from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid(f"Invalid string for {path}.", path)
    return value


def _union_order(tp):
    # try Literal[''] last unless the value is '' (handled by Literal equality), lists/dicts first
    if typing.get_origin(tp) is typing.Literal:
        return 2
    return 1


def _validate_dict(value: dict, cls: type, path: str) -> dict:
    hints = _hints(cls)
    for key in sorted(getattr(cls, "__required_keys__", ())):
        if key in hints and key not in value:
            sub = f"{path}[{key}]" if path else key
            raise invalid_request(f"Missing required param: {sub}.", param=sub, code="parameter_missing")
    out = {}
    for key, item in value.items():
        sub = f"{path}[{key}]" if path else key
        if key not in hints:
            raise invalid_request(f"Received unknown parameter: {sub}", param=sub, code="parameter_unknown")
        annotation, ns = hints[key]
        out[key] = _coerce(item, annotation, sub, ns)
    return out


def validate(raw: dict, params: str | type | None, supported: Iterable[str] = ()) -> dict:
    """Check ``raw`` against the SDK's TypedDict ``params`` and the sandbox's ``supported`` paths.

    ``supported`` lists dotted-bracket paths the handler implements (``"metadata"``,
    ``"line_items[][price]"``); a path covers everything below it.
    """
    if params is None:
        if raw:
            first = next(iter(raw))
            raise invalid_request(f"Received unknown parameter: {first}", param=first, code="parameter_unknown")
        return {}
    try:
        clean = _validate_dict(raw, params_class(params), "")
    except _Invalid as exc:
        raise invalid_request(str(exc), param=exc.path, code="parameter_invalid") from None
    allowed = set(supported) | {"expand"}
    for leaf in (p for key, value in clean.items() for p in _paths(value, key)):
        if not _covered(leaf, allowed):
            raise invalid_request(
                f"The parameter {leaf} is valid at Stripe but not supported by the sandbox "
                "(it would be ignored here, so it is refused).",
                param=leaf,
                code="parameter_unsupported",
            )
    return clean


def _paths(node: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _paths(value, f"{prefix}[{key}]" if prefix else key)
    elif isinstance(node, list) and node and any(isinstance(v, (dict, list)) for v in node):
        for value in node:
            yield from _paths(value, f"{prefix}[]")
    else:
        yield prefix


def _covered(path: str, allowed: set[str]) -> bool:
    while path:
        if path in allowed:
            return True
        cut = path.rfind("[")
        path = path[:cut] if cut > 0 else ""
    return False
