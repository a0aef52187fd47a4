"""Settings of the JSON API for separate front ends (issue 14), read by ``config.load_settings``.

* ``API_CORS_ORIGINS``: the origins (``https://app.example.com``; comma-separated in the
  environment) whose pages may call ``/api/…`` from the browser (``web/cors.py``) and where a
  checkout may send the buyer back. None by default. Kept as a tuple of serialized origins
  (lower-case scheme and host, the port only when it is not the scheme's default), which is
  what a browser sends in ``Origin``; ``*``, paths and anything else that is not an origin are
  refused at start, and live mode accepts only ``https://`` origins.
* ``API_RATE_LIMIT``: requests per client IP for the whole API (default ``100 per minute``).
* ``TRUSTED_PROXY_COUNT``: how many reverse proxies in front of the store append to
  ``X-Forwarded-For``/``X-Forwarded-Proto`` (default 0: the client address is the socket's peer
  and those headers are ignored; ``web/proxies.py``).
* The rate limiter's storage: ``RATELIMIT_STORAGE_URI`` when set, else ``REDIS_URL`` (so every
  worker counts against one limit), else this process's memory. A Redis that stops answering
  makes the limiter count in memory until it is back, rather than fail requests.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from limits import parse

API_ENV_NAMES = ("API_CORS_ORIGINS", "API_RATE_LIMIT", "TRUSTED_PROXY_COUNT")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: a deployment behind more proxies than this is more likely a typo
MAX_TRUSTED_PROXIES = 5


def api_defaults() -> dict[str, Any]:
    return {
        "API_CORS_ORIGINS": (),
        "API_RATE_LIMIT": "100 per minute",
        "TRUSTED_PROXY_COUNT": 0,
        "RATELIMIT_STORAGE_URI": None,  # None: REDIS_URL, else memory:// (api_settings)
    }


def normalize_origin(value: Any) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL as a browser serializes it in ``Origin``
    (lower-case, no default port), or None when ``value`` has no such origin (a relative
    path, another scheme, user info, an unreadable port)."""
    if not isinstance(value, str) or any(ord(ch) < 33 or ord(ch) == 127 for ch in value) or "\\" in value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def parse_origins(value: Any, *, live: bool, error: type[Exception] = ValueError) -> tuple[str, ...]:
    """``API_CORS_ORIGINS`` (a comma-separated string or a list) as serialized origins."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    origins: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        origin = normalize_origin(item)
        parts = urlsplit(item)
        if origin is None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise error(
                f"API_CORS_ORIGINS: {item!r} is not an origin such as https://app.example.com "
                "(scheme and host, no path; '*' is refused: name each front end)."
            )
        if live and not origin.startswith("https://"):
            raise error(f"API_CORS_ORIGINS: {item!r} must be an https:// origin in live mode.")
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _proxy_count(value: Any, error: type[Exception]) -> int:
    try:
        count = int(value or 0)
    except (TypeError, ValueError):
        count = -1
    if not 0 <= count <= MAX_TRUSTED_PROXIES:
        raise error(f"TRUSTED_PROXY_COUNT must be a number of proxies from 0 to {MAX_TRUSTED_PROXIES} (got {value!r}).")
    return count


def api_settings(settings: dict[str, Any], error: type[Exception] = ValueError) -> None:
    """Check and normalize the API's settings (``error``, config's ``ConfigError``, for one
    that can't be used); pick the rate limiter's storage."""
    live = settings.get("STRIPE_MODE") == "live"
    settings["API_CORS_ORIGINS"] = parse_origins(settings.get("API_CORS_ORIGINS"), live=live, error=error)
    settings["TRUSTED_PROXY_COUNT"] = _proxy_count(settings.get("TRUSTED_PROXY_COUNT"), error)
    try:
        parse(str(settings.get("API_RATE_LIMIT") or ""))
    except ValueError:
        raise error(
            f"API_RATE_LIMIT={settings.get('API_RATE_LIMIT')!r} is not a rate limit like '100 per minute'."
        ) from None
    storage = settings.get("RATELIMIT_STORAGE_URI") or settings.get("REDIS_URL") or "memory://"
    settings["RATELIMIT_STORAGE_URI"] = storage
    if not storage.startswith("memory://"):
        settings.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
        if storage.startswith(("redis://", "rediss://")):
            options = {"socket_connect_timeout": 1, "socket_timeout": 1}
            settings["RATELIMIT_STORAGE_OPTIONS"] = {**options, **(settings.get("RATELIMIT_STORAGE_OPTIONS") or {})}
