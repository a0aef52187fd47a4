"""Conformance of the sandbox's objects to the official SDK's typed model of its API version.

stripe-python carries, for the API version it pins, a class per Stripe object whose annotations
say which fields exist, which are nullable (``Optional``), which enums are allowed (``Literal``),
and which fields are expandable ids (``Union[str, Customer]``). Stripe generates these classes
from its OpenAPI description, so they are a version-matched reference. :func:`shape_errors`
checks a JSON object against them: a field the model lacks, a required field missing, a wrong
type or an enum value outside the model are reported as ``"path: problem"``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import typing

import stripe
from stripe._object_classes import OBJECT_CLASSES

_NONE = type(None)
_MAX_DEPTH = 12


@functools.cache
def model_for(object_name: str):
    entry = OBJECT_CLASSES.get(object_name)
    if isinstance(entry, tuple):  # lazily imported: (module, class name)
        entry = getattr(importlib.import_module(entry[0]), entry[1])
    return entry


@functools.cache
def _fields(cls) -> dict:
    fields = {}
    for klass in reversed(cls.__mro__):
        for key, tp in vars(klass).get("__annotations__", {}).items():
            if key.startswith("_") or key == "OBJECT_NAME":
                continue
            if typing.get_origin(tp) is typing.ClassVar:
                continue
            fields[key] = (tp, klass)
    return fields


def _resolve(tp, owner):
    if isinstance(tp, str):
        tp = typing.ForwardRef(tp)
    if isinstance(tp, typing.ForwardRef):
        name = tp.__forward_arg__
        for module in (sys.modules.get(owner.__module__), stripe):
            if module is not None and hasattr(module, name):
                return getattr(module, name)
        return typing.Any
    return tp


def _is_optional(tp, owner) -> bool:
    tp = _resolve(tp, owner)
    return typing.get_origin(tp) is typing.Union and _NONE in typing.get_args(tp)


def _check(value, tp, owner, path: str, errors: list, depth: int) -> None:
    tp = _resolve(tp, owner)
    if depth > _MAX_DEPTH or tp is typing.Any:
        return
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        options = typing.get_args(tp)
        if value is None:
            if _NONE not in options:
                errors.append(f"{path}: null but not nullable")
            return
        attempts = []
        for option in options:
            if option is _NONE:
                continue
            found: list = []
            _check(value, option, owner, path, found, depth + 1)
            if not found:
                return
            attempts.append(found)
        errors.append(min(attempts, key=len)[0] if attempts else f"{path}: no type fits")
        return
    if value is None:
        errors.append(f"{path}: null but not nullable")
        return
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            errors.append(f"{path}: {value!r} not one of {typing.get_args(tp)[:8]}")
        return
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{path}: expected list, got {type(value).__name__}")
            return
        (item,) = typing.get_args(tp) or (typing.Any,)
        for i, element in enumerate(value):
            _check(element, item, owner, f"{path}[{i}]", errors, depth + 1)
        return
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected object, got {type(value).__name__}")
        return
    if tp in _SCALARS:
        problem = _scalar_problem(value, tp)
        if problem:
            errors.append(f"{path}: {problem}")
    elif origin is not None and getattr(origin, "__name__", "") == "ListObject":
        _check_list(value, typing.get_args(tp), owner, path, errors, depth)
    elif isinstance(tp, type) and issubclass(tp, stripe.StripeObject):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected {tp.__name__}, got {type(value).__name__}")
            return
        if getattr(tp, "OBJECT_NAME", None) and value.get("deleted") is True:
            return
        _check_fields(value, tp, path, errors, depth + 1)
    # UntypedStripeObject[str] (metadata) and similar generic containers: any mapping


_SCALARS = (bool, int, float, str)


def _scalar_problem(value, tp) -> str | None:
    """JSON's bool, int, number and string (a bool is no number, as in Stripe's model)."""
    if tp is bool:
        return None if isinstance(value, bool) else f"expected bool, got {value!r}"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected int, got {value!r}"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"expected number, got {value!r}"
    return None if isinstance(value, str) else f"expected string, got {type(value).__name__}"


def _check_list(value, args, owner, path, errors, depth) -> None:
    if not isinstance(value, dict) or value.get("object") != "list":
        errors.append(f"{path}: expected a list object")
        return
    for key in ("data", "has_more", "url"):
        if key not in value:
            errors.append(f"{path}.{key}: required field missing")
    extra = set(value) - {"object", "data", "has_more", "url", "total_count"}
    for key in sorted(extra):
        errors.append(f"{path}.{key}: not a field of a list")
    item = args[0] if args else typing.Any
    for i, element in enumerate(value.get("data", [])):
        _check(element, item, owner, f"{path}.data[{i}]", errors, depth + 1)


def _check_fields(obj: dict, cls, path: str, errors: list, depth: int = 0) -> None:
    fields = _fields(cls)
    if not fields:
        return
    for key, value in obj.items():
        if key not in fields:
            errors.append(f"{path}.{key}: not a field of {cls.__name__}")
            continue
        tp, owner = fields[key]
        _check(value, tp, owner, f"{path}.{key}", errors, depth)
    for key, (tp, owner) in fields.items():
        if key not in obj and not _is_optional(tp, owner):
            errors.append(f"{path}.{key}: required field missing")


def shape_errors(obj: dict) -> list[str]:
    """``[]`` when ``obj`` fits the SDK's model of its ``object`` type, else the problems."""
    name = obj.get("object")
    if name in ("list", "search_result"):
        errors: list = []
        for i, item in enumerate(obj.get("data", [])):
            errors.extend(shape_errors(item) if isinstance(item, dict) else [f"list.data[{i}]: not an object"])
        return errors
    cls = model_for(name) if isinstance(name, str) else None
    if cls is None or not isinstance(name, str):
        return [f"unknown object type {name!r}"]
    errors = []
    if obj.get("deleted") is True:  # deleted objects: {id, object, deleted}
        extra = set(obj) - {"id", "object", "deleted"}
        return [f"{name}.{key}: not a field of a deleted object" for key in sorted(extra)]
    _check_fields(obj, cls, name, errors)
    return errors


def error_shape_errors(body: dict) -> list[str]:
    """Stripe's error object has no class in the SDK's model; check the documented keys."""
    allowed = {
        "type",
        "code",
        "decline_code",
        "message",
        "param",
        "doc_url",
        "charge",
        "payment_intent",
        "payment_method",
        "payment_method_type",
        "setup_intent",
        "source",
        "request_log_url",
        "advice_code",
        "network_advice_code",
        "network_decline_code",
    }
    error = body.get("error")
    if not isinstance(error, dict):
        return ["error: missing"]
    problems = [f"error.{k}: not a field of an error" for k in sorted(set(error) - allowed)]
    if error.get("type") not in ("api_error", "card_error", "idempotency_error", "invalid_request_error"):
        problems.append(f"error.type: {error.get('type')!r} not a Stripe error type")
    for key in ("payment_intent", "setup_intent", "payment_method"):
        if isinstance(error.get(key), dict):
            problems.extend(shape_errors(error[key]))
    return problems
