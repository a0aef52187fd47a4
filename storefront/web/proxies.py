"""Reverse proxies in front of the store (``TRUSTED_PROXY_COUNT``).

With no proxy (the default, 0) the client's address is the socket's peer and
``X-Forwarded-For``/``X-Forwarded-Proto`` are ignored: a client can write them, so nothing
(the API's rate limit, the log-in throttles) may believe them. Behind N proxies that each append
the address they saw, werkzeug's ``ProxyFix`` takes the client address from the N-th entry
counted from the right of ``X-Forwarded-For`` (the one the outermost trusted proxy wrote; what
the client put in front is ignored) and the scheme from ``X-Forwarded-Proto`` the same way.
``X-Forwarded-Host`` is not read: the ``Host`` header stays what the host guard checks.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def install(app: Flask) -> None:
    """The outermost WSGI layer, when there are trusted proxies: every other layer and every
    view sees the client's address."""
    count = int(app.config.get("TRUSTED_PROXY_COUNT") or 0)
    if count > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)  # type: ignore[method-assign]
