"""A WSGI fast path for the busiest page: the catalog as seen by anonymous visitors.

The Flask view renders the anonymous home page and marks it cacheable (:func:`offer`, with the
catalog rows it was rendered from); this middleware then stores the exact response Flask sent
(status, headers -- including those ``after_request`` added, such as the security headers --
and body), keyed by those rows. For a later anonymous
``GET /`` (no cookies, no query string) this middleware runs the same ONE catalog query and,
if the rows are unchanged, answers with the stored bytes without entering Flask at all.
A catalog change is visible on the very next request (the rows are the key); anything the
cache has not seen falls through to Flask. Disabled when app-wide rate limits are configured
(they must see every request) or with ``CATALOG_PAGE_CACHE=False``.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy.engine import Engine

EXTENSION_KEY = "catalog_page_cache"
#: set by the view in the WSGI environ: the catalog rows the anonymous page was rendered from
ENVIRON_KEY = "storefront.catalog_page_rows"


def offer(environ: dict, rows: tuple) -> None:
    """The view's side: this response may be stored, keyed by ``rows`` (stored once Flask has
    finished it, so every ``after_request`` header is part of what is replayed)."""
    environ[ENVIRON_KEY] = rows


class CatalogPageCache:
    def __init__(self, app: Flask, wsgi_app: Callable, query: Callable[[Any], tuple], max_entries: int = 8):
        self.app = app
        self.wsgi_app = wsgi_app
        self.query = query
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[str, list[tuple[str, str]], bytes]] = {}
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self.session_cookie = app.config.get("SESSION_COOKIE_NAME", "session")

    # -- used by the view --------------------------------------------------------------
    def store(self, rows: tuple, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[rows] = (status, headers, body)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @staticmethod
    def _cacheable_request(environ: dict) -> bool:
        return (environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") == "GET"
                and not environ.get("QUERY_STRING") and not environ.get("HTTP_COOKIE"))

    def _fill(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Serve (from the cache, or through Flask); store Flask's final response if the view
        offered it."""
        if self._entries:
            served = self._serve(environ, start_response)
            if served is not None:
                return served
        captured: list = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info=None):
            captured[:] = [status, list(headers)]
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, capture)
        rows = environ.get(ENVIRON_KEY)
        if rows is None or not captured:
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = captured
        if status.startswith("200") and not any(k.lower() == "set-cookie" for k, _ in headers):
            self.store(rows, status, headers, body)
        return [body]

    def _serve(self, environ: dict, start_response: Callable) -> list[bytes] | None:
        if self._engine is None:
            with self.app.app_context():
                from ..extensions import db
                self._engine = db.engine
        with self._engine.connect() as conn:
            rows = self.query(conn)
        entry = self._entries.get(rows)
        if entry is None:
            return None
        status, headers, body = entry
        start_response(status, list(headers))
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    # -- WSGI ----------------------------------------------------------------------------
    def _eligible(self, environ: dict) -> bool:
        return (
            environ.get("PATH_INFO") == "/"
            and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
            and not environ.get("QUERY_STRING")
            and not environ.get("HTTP_COOKIE")
            and bool(self._entries)
        )

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self._cacheable_request(environ):
            return self._fill(environ, start_response)
        if self._eligible(environ):  # HEAD
            served = self._serve(environ, start_response)
            if served is not None:
                return served
        return self.wsgi_app(environ, start_response)


def install(app: Flask, query: Callable[[Any], tuple]) -> None:
    if not app.config.get("CATALOG_PAGE_CACHE", True):
        return
    if app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"):
        return
    cache = CatalogPageCache(app, app.wsgi_app, query)
    app.wsgi_app = cache  # type: ignore[method-assign]
    app.extensions[EXTENSION_KEY] = cache
