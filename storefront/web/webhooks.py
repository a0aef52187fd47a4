"""``POST /api/stripe/webhook``: Stripe's deliveries (no CSRF: the signature authenticates).

A verified event is stored and acknowledged (200); after that commit a worker is woken to
process it (:func:`storefront.jobs.process_event`). A queue that can't be reached is logged and
the delivery still acknowledged: the stored row is the truth, and the sweeper processes it.

A body larger than ``WEBHOOK_MAX_BYTES`` (default 256 KiB; Stripe's events are a few KiB) is
refused with 413 before it is read or HMAC'd: by its Content-Length, and while reading a body
that has none. This limit replaces the app's ``MAX_CONTENT_LENGTH`` for this one route (forms
and JSON are smaller than an invoice event can be).

Who answers: :class:`WebhookReceiver`, a WSGI layer in front of Flask, answers every POST to the
route itself (Stripe's bursts are what this path must keep up with, and Flask's request
machinery -- sessions, CSRF, rate limits, after-request hooks -- has nothing to do for a
signed delivery: a third of the time of an acknowledgement). It calls :func:`acknowledge`, the
same function the Flask view calls, and adds the headers Flask's would carry, so both answer
byte for byte alike. ``WEBHOOK_FAST_PATH=False`` leaves every delivery to the view.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from .. import jobs
from ..extensions import csrf, limiter
from ..services import webhooks
from ..stripe_gateway import WebhookPayloadInvalid, WebhookSignatureInvalid
from . import request_log, security

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
PATH = "/api/stripe/webhook"
_CHUNK = 64 * 1024

Answer = tuple[int, dict[str, Any]]


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": code, "type": "invalid_request_error", "message": message}}


def _read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The raw body, or None as soon as it is longer than ``limit`` (the rest is never read)."""
    stream = get_input_stream(environ, max_content_length=limit)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = stream.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return None
    except RequestEntityTooLarge:
        return None


def acknowledge(environ: dict[str, Any]) -> Answer:
    """One delivery, from its WSGI environ to Stripe's answer (status, JSON body): size limit,
    signature, store (committed), then wake a worker. Needs the app context."""
    limit = int(current_app.config.get("WEBHOOK_MAX_BYTES") or webhooks.MAX_BYTES)
    too_large = f"Webhook bodies are limited to {limit} bytes."
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, "payload_too_large", too_large)
    payload = _read_body(environ, limit)
    if payload is None:
        return _error(413, "payload_too_large", too_large)
    try:
        stored = webhooks.store(payload, environ.get("HTTP_STRIPE_SIGNATURE"))
    except WebhookSignatureInvalid:
        return _error(400, "invalid_signature", "Invalid or missing Stripe-Signature.")
    except WebhookPayloadInvalid as err:
        return _error(400, "invalid_payload", err.user_message)
    if stored.row_id is not None:
        try:
            jobs.enqueue(jobs.process_event, stored.row_id)
        except Exception:  # noqa: BLE001 - the queue is down: stored and acknowledged, the sweeper takes it
            log.warning("webhook event row %s stored but not queued; the sweeper will process it", stored.row_id)
    return stored.outcome.status, stored.outcome.body


@bp.post(PATH)
@csrf.exempt
@limiter.exempt
def receive():
    status, body = acknowledge(request.environ)
    return jsonify(body), status


class WebhookReceiver:
    """Answers ``POST`` to :data:`PATH` without entering Flask (see the module's docstring);
    anything else goes on to Flask."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.wsgi_app = wsgi_app
        self.route = request_log.rule_of(app, "webhooks.receive")
        self.headers = [("Content-Type", "application/json"), *security.static_headers(app.config)]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            status, body = acknowledge(environ)
        data = (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()
        environ[request_log.ROUTE_KEY] = self.route  # the request log needs no matching
        start_response(
            f"{status} {HTTP_STATUS_CODES[status].upper()}", [*self.headers, ("Content-Length", str(len(data)))]
        )
        return [data]


def install(app: Flask) -> None:
    if app.config.get("WEBHOOK_FAST_PATH", True):
        app.wsgi_app = WebhookReceiver(app, app.wsgi_app)  # type: ignore[method-assign]
