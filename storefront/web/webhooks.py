"""``POST /api/stripe/webhook``: Stripe's deliveries (no CSRF: the signature authenticates).

A verified event is stored and acknowledged (200); after that commit a worker is woken to
process it (:func:`storefront.jobs.process_event`). A queue that can't be reached is logged and
the delivery still acknowledged: the stored row is the truth, and the sweeper processes it.

A body larger than ``WEBHOOK_MAX_BYTES`` (default 256 KiB; Stripe's events are a few KiB) is
refused with 413 before it is read or HMAC'd: by its Content-Length, and while reading a body
that has none. This limit replaces the app's ``MAX_CONTENT_LENGTH`` for this one route (forms
and JSON are smaller than an invoice event can be).
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from .. import jobs
from ..extensions import csrf, limiter
from ..services import webhooks
from ..stripe_gateway import WebhookPayloadInvalid, WebhookSignatureInvalid

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
_CHUNK = 64 * 1024


def _error(status: int, code: str, message: str):
    return jsonify(error={"code": code, "type": "invalid_request_error", "message": message}), status


def _read_body(limit: int) -> bytes | None:
    """The raw body, or None as soon as it is longer than ``limit`` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


@bp.post("/api/stripe/webhook")
@csrf.exempt
@limiter.exempt
def receive():
    limit = int(current_app.config.get("WEBHOOK_MAX_BYTES") or webhooks.MAX_BYTES)
    request.max_content_length = limit  # before the body stream is first touched
    too_large = f"Webhook bodies are limited to {limit} bytes."
    if request.content_length is not None and request.content_length > limit:
        return _error(413, "payload_too_large", too_large)
    try:
        payload = _read_body(limit)
    except RequestEntityTooLarge:
        payload = None
    if payload is None:
        return _error(413, "payload_too_large", too_large)
    try:
        stored = webhooks.store(payload, request.headers.get("Stripe-Signature"))
    except WebhookSignatureInvalid:
        return _error(400, "invalid_signature", "Invalid or missing Stripe-Signature.")
    except WebhookPayloadInvalid as err:
        return _error(400, "invalid_payload", err.user_message)
    if stored.row_id is not None:
        try:
            jobs.enqueue(jobs.process_event, stored.row_id)
        except Exception:  # noqa: BLE001 - the queue is down: stored and acknowledged, the sweeper takes it
            log.warning("webhook event row %s stored but not queued; the sweeper will process it", stored.row_id)
    return jsonify(stored.outcome.body), stored.outcome.status
