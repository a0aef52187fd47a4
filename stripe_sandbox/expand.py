"""``expand[]``: replace ids by their objects, and add the fields Stripe only includes on request.

Paths are dotted (``latest_invoice.confirmation_secret``); on a list response they start with
``data.``. An id met on the path is replaced by the stored object of the type its prefix names.
*Includable* fields (``checkout.session.line_items``, ``invoice.confirmation_secret``) are absent
unless expanded; their resource module registers a function that computes them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from . import errors
from .primitives import public, type_of
from .store import Store

#: (object type, field) -> function(store, obj) computing the field when it is expanded
INCLUDABLE: dict[tuple[str, str], Callable[[Store, dict], object]] = {}

#: fields that are expandable ids but whose value Stripe shows as an id otherwise
MAX_DEPTH = 4


def includable(object_type: str, field: str):
    def register(fn):
        INCLUDABLE[(object_type, field)] = fn
        return fn

    return register


def strip_includables(obj: dict) -> dict:
    """Remove includable fields (stored objects never carry them, but nested copies might)."""
    for object_type, field in INCLUDABLE:
        if obj.get("object") == object_type:
            obj.pop(field, None)
    return obj


def expand(store: Store, obj: dict, paths: list[str]) -> dict:
    """``obj`` with ``paths`` expanded, as the API answers it (private keys removed)."""
    obj = copy.deepcopy(obj)
    for path in paths or []:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise errors.invalid_request(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}", param="expand"
            )
        if obj.get("object") in ("list", "search_result"):
            if parts[0] != "data":
                raise _not_expandable(path)
            for item in obj["data"]:
                _expand_in(store, item, parts[1:], path)
        else:
            _expand_in(store, obj, parts, path)
    return public(obj)


def _expand_in(store: Store, node, parts: list[str], path: str) -> None:
    if not parts or node is None:
        return
    if isinstance(node, list):
        for item in node:
            _expand_in(store, item, parts, path)
        return
    if not isinstance(node, dict):
        raise _not_expandable(path)
    head, rest = parts[0], parts[1:]
    key = (node.get("object"), head)
    if key in INCLUDABLE and head not in node:
        node[head] = INCLUDABLE[key](store, node)
    if head not in node:
        raise _not_expandable(path)
    value = node[head]
    if isinstance(value, str) and type_of(value):
        loaded = store.get(value)
        if loaded is None:
            raise _not_expandable(path)
        node[head] = value = loaded
    elif not rest and not isinstance(value, dict) and value is not None and key not in INCLUDABLE:
        raise _not_expandable(path)
    _expand_in(store, value, rest, path)


def _not_expandable(path: str) -> errors.StripeError:
    return errors.invalid_request(f"This property cannot be expanded ({path}).", param="expand")
