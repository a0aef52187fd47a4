"""The rate limiter for checks made by hand (log-in, sign-up and reset throttles in ``web/auth.py``).

Flask-Limiter falls back to counting in memory when its storage (Redis) stops answering, but
only for the limits it checks itself (the API's); a view asking ``limiter.limiter`` directly
would get Redis's ``ConnectionError`` as a 500. :func:`call` asks the configured storage and,
if that fails, counts in this process's memory instead (logged), so a Redis outage loosens
the throttles to one count per worker rather than breaking log-in.
"""

from __future__ import annotations

import logging
from typing import Any

from limits.storage import MemoryStorage
from limits.strategies import RateLimiter

from ..extensions import limiter

log = logging.getLogger(__name__)

_fallback: RateLimiter | None = None


def _fallback_limiter() -> RateLimiter:
    global _fallback
    if _fallback is None:
        _fallback = type(limiter.limiter)(MemoryStorage())  # the configured strategy, in memory
    return _fallback


def call(method: str, *args: Any) -> Any:
    """``limiter.limiter.<method>(*args)`` (``hit``, ``test``, ``get_window_stats``), counted in
    memory while the limiter's storage doesn't answer."""
    try:
        return getattr(limiter.limiter, method)(*args)
    except Exception as err:  # noqa: BLE001 - any storage failure (redis.ConnectionError, a timeout, …)
        log.warning("rate limit storage unreachable (%s); counting %s in memory", err, args[1:2])
        return getattr(_fallback_limiter(), method)(*args)
