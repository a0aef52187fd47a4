"""What every call of the JSON API goes through besides its view (``protect(api.bp)``):

* **one rate limit for the whole API**, ``API_RATE_LIMIT`` (100 per minute) per client IP,
  shared by every route of the blueprint and, with Redis storage (``REDIS_URL`` or
  ``RATELIMIT_STORAGE_URI``), by every worker. The client IP is the socket's peer, or the one
  the trusted proxies name (``TRUSTED_PROXY_COUNT``, ``web/proxies.py``), never a header the
  client wrote; an IPv6 client counts by its /64 (one subscriber's network). A browser's
  preflight ``OPTIONS`` is not counted: a preflight answered 429 reaches the page as an
  unreadable network error, while the real call's 429 can be read (CORS headers, ``Retry-After``).
* **CSRF only where a cookie is**: a call carrying our session or remember-me cookie needs the
  CSRF token (``X-CSRFToken``) on a POST, as a form does, even if the session is not signed in;
  a call without them (a separate front end's ``fetch``) is not signed in and needs none. No
  CORS answer allows credentials, so a page elsewhere can't both send our cookies and read
  the answer.
* **CORS** headers on ``/api/`` answers (``web/cors.py``).
"""

from __future__ import annotations

import ipaddress
import time

from flask import Blueprint, current_app, request
from flask_limiter.util import get_remote_address

from ..extensions import csrf, limiter
from . import cors

#: the limiter's bucket shared by every route of the API
LIMIT_SCOPE = "api"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: when the limiter can't say (its storage went away): the window of the default limit
FALLBACK_RETRY_AFTER = 60


def client_ip_key() -> str:
    """The rate limit's key: the client's IPv4 address, or the /64 of its IPv6 address."""
    address = get_remote_address() or "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def api_rate_limit() -> str:
    return str(current_app.config["API_RATE_LIMIT"])


def _is_preflight() -> bool:
    return request.method == "OPTIONS"


def carries_our_cookie() -> bool:
    """The request has our session or remember-me cookie (whether or not it signs anyone in)."""
    config = current_app.config
    names = (config.get("SESSION_COOKIE_NAME") or "session", config.get("REMEMBER_COOKIE_NAME") or "remember_token")
    return any(name in request.cookies for name in names)


def csrf_where_a_cookie_is() -> None:
    """``before_request`` of the API: Flask-WTF's check, for the calls that carry our cookie."""
    if request.method not in UNSAFE_METHODS or not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    if carries_our_cookie():
        csrf.protect()  # raises CSRFError -> 400 csrf_failed (web/errors.py)


def retry_after_seconds() -> int:
    """Seconds until the limit this request broke lets it through again (for ``Retry-After``)."""
    limit = limiter.current_limit
    if limit is None:
        return FALLBACK_RETRY_AFTER
    try:
        reset_at = limit.reset_at
    except Exception:  # noqa: BLE001 - the limiter's storage went away: say the window
        return FALLBACK_RETRY_AFTER
    return max(1, int(reset_at - time.time()))  # reset_at is already rounded up


def protect(bp: Blueprint) -> None:
    """The API blueprint's limit, CSRF rule and CORS headers (called once, at import)."""
    csrf.exempt(bp)
    bp.before_request(csrf_where_a_cookie_is)
    limiter.shared_limit(api_rate_limit, scope=LIMIT_SCOPE, key_func=client_ip_key, exempt_when=_is_preflight)(bp)
    bp.after_app_request(cors.add_cors_headers)
