"""A WSGI cache for the busiest page: the catalog as anonymous visitors see it.

The Flask view renders the anonymous home page and offers it (:func:`offer`, with the catalog
rows it was rendered from). This middleware stores the response exactly as Flask finished it --
status, every header (``after_request``'s security headers and whatever a later change adds)
and body -- keyed by those rows and by the host and script root the page was built for. A later
anonymous ``GET``/``HEAD /`` (no cookie, no query string) runs the same ONE catalog query and,
if the rows are unchanged, gets the stored bytes without entering Flask. A catalog change shows
on the very next request (the rows are the key); anything not stored goes through Flask.
Disabled when app-wide rate limits are configured (they must see every request) or with
``CATALOG_PAGE_CACHE=False``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy.engine import Engine

from ..extensions import db
from . import request_log

EXTENSION_KEY = "catalog_page_cache"
#: set by the view in the WSGI environ: the catalog rows the anonymous page was rendered from
ENVIRON_KEY = "storefront.catalog_page_rows"

Entry = tuple[str, list[tuple[str, str]], bytes]


def offer(environ: dict, rows: tuple) -> None:
    """The view's side: this response may be stored, keyed by ``rows`` (stored once Flask has
    finished it, so every ``after_request`` header is part of what is replayed)."""
    environ[ENVIRON_KEY] = rows


def _anonymous_home(environ: dict) -> bool:
    return (
        environ.get("PATH_INFO") == "/"
        and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
        and not environ.get("QUERY_STRING")
        and not environ.get("HTTP_COOKIE")
    )


def _site(environ: dict) -> tuple[str, str, str]:
    """What the page's URLs are built from besides the rows (the host guard checked the host)."""
    return (environ.get("wsgi.url_scheme", ""), environ.get("HTTP_HOST", ""), environ.get("SCRIPT_NAME", ""))


class CatalogPageCache:
    def __init__(self, app: Flask, wsgi_app: Callable, query: Callable[[Any], tuple], max_entries: int = 8):
        self.app = app
        self.wsgi_app = wsgi_app
        self.query = query
        self.max_entries = max_entries
        self._entries: dict[tuple, Entry] = {}
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self.route = request_log.rule_of(app, "shop.index")

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not _anonymous_home(environ):
            return self.wsgi_app(environ, start_response)
        if self._entries:
            entry = self._entries.get((_site(environ), self._rows()))
            if entry is not None:
                environ[request_log.ROUTE_KEY] = self.route  # the request log needs no matching
                status, headers, body = entry
                start_response(status, list(headers))
                return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]
        return self._through_flask(environ, start_response)

    def _rows(self) -> tuple:
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        with self._engine.connect() as conn:
            return self.query(conn)

    def _through_flask(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Flask's answer, stored when the view offered it (a 200 GET that sets no cookie)."""
        captured: list = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info=None):
            captured[:] = [status, list(headers)]
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, capture)
        rows = environ.get(ENVIRON_KEY)
        if rows is None or not captured or environ["REQUEST_METHOD"] != "GET":
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = captured
        if status.startswith("200") and not any(k.lower() == "set-cookie" for k, _ in headers):
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[(_site(environ), rows)] = (status, headers, body)
        return [body]


def install(app: Flask, query: Callable[[Any], tuple]) -> None:
    if not app.config.get("CATALOG_PAGE_CACHE", True):
        return
    if app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"):
        return
    cache = CatalogPageCache(app, app.wsgi_app, query)
    app.wsgi_app = cache  # type: ignore[method-assign]
    app.extensions[EXTENSION_KEY] = cache
