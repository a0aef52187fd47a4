"""CORS for the JSON API: pages on the origins in ``API_CORS_ORIGINS`` may call ``/api/…``.

A separate front end (``https://app.example.com``) calls the API with ``fetch`` and no
credentials. Its browser reads an answer only if the answer names the page's origin in
``Access-Control-Allow-Origin``, and sends a ``POST`` with a JSON body only after a preflight
``OPTIONS`` says the method and the ``Content-Type`` header are allowed. This module adds those
headers, after every ``/api/`` response (errors and the 429 too, so the front end can read
them) and nowhere else:

* an ``Origin`` that is listed exactly (as browsers serialize it) is echoed back; any other
  origin, ``null`` and requests without ``Origin`` get no CORS header at all;
* ``Access-Control-Allow-Credentials`` is never sent: a page elsewhere can't make the browser
  send our cookies *and* read the answer (and a request carrying our session cookie needs the
  CSRF token anyway: ``web/api_guard.py``);
* ``Vary: Origin`` on every ``/api/`` answer, so a shared cache never gives one origin's answer
  to another (``GET /api/prices`` is cacheable);
* Stripe's webhook (``/api/stripe/…``) is server to server: no CORS.

The origins are read from the app's config at request time (a test or a settings reload sees
the current list). flask-cors was considered: it fixes its origins when the app starts, sends
the whole origin list to requests without ``Origin`` unless told otherwise, and adds
``Vary: Origin`` only for several origins; these few exact rules are easier to check here.
"""

from __future__ import annotations

from flask import Response, current_app, request

from ..api_settings import normalize_origin

#: what a cross-origin page may do: the seed's client GETs and POSTs JSON, nothing else
ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("Content-Type",)
#: response headers a cross-origin page may read besides the CORS-safelisted ones
EXPOSED_HEADERS = ("Retry-After", "ETag")
#: seconds a browser may reuse a preflight's answer
PREFLIGHT_MAX_AGE = 600


def allowed_origins() -> tuple[str, ...]:
    return tuple(current_app.config.get("API_CORS_ORIGINS") or ())


def origin_allowed(url: str | None) -> bool:
    """True when ``url``'s origin (``scheme://host[:port]``) is one of ``API_CORS_ORIGINS``:
    a page there may call the API, and a checkout may send its buyer back there."""
    origin = normalize_origin(url)
    return origin is not None and origin in allowed_origins()


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") and not path.startswith("/api/stripe/")


def _preflight_headers(response: Response) -> None:
    method = request.headers.get("Access-Control-Request-Method", "").upper()
    if method not in ALLOWED_METHODS:
        return  # the browser sees no allowed method and refuses the call
    response.headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
    response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)


def add_cors_headers(response: Response) -> Response:
    """``after_request`` for the whole app: CORS headers on ``/api/`` answers only."""
    if not is_api_path(request.path):
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if not origin or origin not in allowed_origins():
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    response.headers.pop("Access-Control-Allow-Credentials", None)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        _preflight_headers(response)
    return response
