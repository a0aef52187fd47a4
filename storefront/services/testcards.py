"""Test cards for the test-mode page: from the sandbox in sandbox mode, else a built-in list."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from typing import Any

from flask import current_app

log = logging.getLogger(__name__)

BUILTIN: list[dict[str, Any]] = [
    {
        "number": "4242424242424242",
        "brand": "visa",
        "category": "success",
        "outcome": "Succeeds",
        "decline_code": None,
        "requires_3ds": False,
    },
    {
        "number": "5555555555554444",
        "brand": "mastercard",
        "category": "success",
        "outcome": "Succeeds",
        "decline_code": None,
        "requires_3ds": False,
    },
    {
        "number": "4000002500003155",
        "brand": "visa",
        "category": "3ds",
        "outcome": "Requires 3-D Secure unless set up for off-session use",
        "decline_code": None,
        "requires_3ds": "unless_set_up",
    },
    {
        "number": "4000000000003220",
        "brand": "visa",
        "category": "3ds",
        "outcome": "Always requires 3-D Secure",
        "decline_code": None,
        "requires_3ds": True,
    },
    {
        "number": "4000000000000002",
        "brand": "visa",
        "category": "declined",
        "outcome": "Declined",
        "decline_code": "generic_decline",
        "requires_3ds": False,
    },
    {
        "number": "4000000000009995",
        "brand": "visa",
        "category": "declined",
        "outcome": "Declined: insufficient funds",
        "decline_code": "insufficient_funds",
        "requires_3ds": False,
    },
    {
        "number": "4000000000000069",
        "brand": "visa",
        "category": "declined",
        "outcome": "Declined: expired card",
        "decline_code": "expired_card",
        "requires_3ds": False,
    },
]

_cache: dict[str, list[dict[str, Any]]] = {}
_lock = threading.Lock()


def list_test_cards() -> tuple[list[dict[str, Any]], str]:
    """Returns (cards, source) where source is "sandbox" or "builtin"."""
    if current_app.config["STRIPE_MODE"] != "sandbox":
        return BUILTIN, "builtin"
    url = current_app.config["STRIPE_API_BASE"] + "/_sandbox/test-cards"
    with _lock:
        if url in _cache:
            return _cache[url], "sandbox"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (our own sandbox)
            data = json.load(response)
        cards = (data.get("cards") or data.get("data")) if isinstance(data, dict) else data
        if not isinstance(cards, list):
            raise ValueError("unexpected test-cards payload")
    except Exception as err:  # noqa: BLE001 - sandbox down or odd reply: show the essentials, not an error
        log.warning("could not load test cards from the sandbox: %s", err)
        return BUILTIN, "builtin"
    with _lock:
        _cache[url] = cards
    return cards, "sandbox"
