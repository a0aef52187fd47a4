"""Small helpers for the sandbox's tests."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None) -> T:
    """``value``, which must be there. stripe-python types most fields Optional; a test that
    reads one asserts it was sent (and the type checker then knows it is not None)."""
    assert value is not None
    return value
