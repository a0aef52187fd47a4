"""Operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``/healthz`` -- the process answers (no database, no Stripe): for a liveness probe.
* ``/readyz`` -- the database answers ``SELECT 1``, the queue's storage is reachable and Stripe
  answers a one-item product list (a short timeout, no retries; the answer is kept for
  ``READYZ_STRIPE_CACHE_SECONDS`` so probes from many balancers can't hammer Stripe). 200 when all
  are ``ok``, else 503; the body names each check (``{"database": "ok", "stripe": "error:
  StripeUnavailable"}``) with an error's class only -- never its message (a database error can
  quote its URL).
* ``/metrics`` -- Prometheus, never public: a request needs ``Authorization: Bearer
  <METRICS_TOKEN>`` or must come straight (no ``Forwarded``/``X-Forwarded-For``: a proxy on the
  same host would otherwise make every visitor "local") from an address in ``METRICS_ALLOW``
  (comma-separated addresses or networks; by default loopback in sandbox mode, nobody otherwise).

All three are GETs with no session, exempt from CSRF and rate limits, and log at DEBUG.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import jobs, metrics
from ..extensions import csrf, db, limiter
from ..stripe_gateway import GatewayError, StripeGateway

bp = Blueprint("ops", __name__)
csrf.exempt(bp)
limiter.exempt(bp)

EXTENSION_KEY = "ops"
READYZ_STRIPE_TIMEOUT = 3.0


@dataclass
class Probes:
    """What readiness asks and how the queue is measured (the queue plugs in here)."""

    stripe: StripeGateway
    cache_seconds: float
    queue_ping: Callable[[], object] | None = None
    queue_depth: Callable[[], int] | None = None
    _stripe_answer: tuple[float, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stripe_status(self) -> str:
        """Stripe's answer, asked at most once per ``cache_seconds`` per process."""
        with self._lock:
            cached = self._stripe_answer
            if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
                return cached[1]
            try:
                self.stripe.ping()
                answer = "ok"
            except GatewayError as err:  # down, slow, refusing our key: not ready
                answer = f"error: {type(err).__name__}"
            self._stripe_answer = (time.monotonic(), answer)
            return answer


def register_queue(app: Flask, *, ping: Callable[[], object], depth: Callable[[], int]) -> None:
    """The queue's reachability check (raises when down) and depth (pending jobs)."""
    probes: Probes = app.extensions[EXTENSION_KEY]
    probes.queue_ping = ping
    probes.queue_depth = depth


def _probes() -> Probes:
    probes: Probes = current_app.extensions[EXTENSION_KEY]
    return probes


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return {"status": "ok"}


def _database_status() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as err:  # unreachable, wrong URL, pool exhausted: not ready
        return f"error: {type(err).__name__}"
    finally:
        db.session.remove()


def _queue_status(probes: Probes) -> str:
    if probes.queue_ping is None:
        return "not configured"
    try:
        probes.queue_ping()
        return "ok"
    except Exception as err:  # noqa: BLE001 - whatever the queue's storage raises means "not ready"
        return f"error: {type(err).__name__}"


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    probes = _probes()
    checks = {
        "database": _database_status(),
        "queue": _queue_status(probes),
        "stripe": probes.stripe_status(),
    }
    ready = not any(value.startswith("error") for value in checks.values())
    if not ready:
        current_app.logger.warning("not ready: %s", checks)
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ready else 503


# --- /metrics ---------------------------------------------------------------------------------------


def allowed_networks(value: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``METRICS_ALLOW``: a list or a comma-separated string of addresses or networks."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


def _metrics_allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN") or ""
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    if request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For"):
        return False  # through a proxy: the address we see is the proxy's
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in current_app.config["METRICS_ALLOW"])


def _queue_depth() -> float | None:
    depth = _probes().queue_depth
    if depth is None:
        return None
    try:
        return float(depth())
    except Exception:  # the queue is down: the gauge is absent (readyz says why)
        current_app.logger.warning("queue depth unavailable", exc_info=True)
        return None


@bp.get("/metrics")
def metrics_view() -> ResponseReturnValue:
    if not _metrics_allowed():
        status = 403 if request.headers.get("Authorization") else 401
        response = jsonify(error={"code": "forbidden", "message": "Metrics need a token.", "type": "auth_error"})
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, status
    depth = metrics.GaugeAtScrape("storefront_queue_depth", "Jobs waiting in the queue.", _queue_depth)
    return metrics.render([depth]), 200, {"Content-Type": metrics.CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}


def init_app(app: Flask) -> None:
    """Readiness's own Stripe client (short timeout, no retries) and the blueprint."""
    config = dict(app.config)
    config.update(STRIPE_TIMEOUT=min(float(config.get("STRIPE_TIMEOUT", 10)), READYZ_STRIPE_TIMEOUT))
    config.update(STRIPE_MAX_NETWORK_RETRIES=0)
    app.config["METRICS_ALLOW"] = allowed_networks(app.config.get("METRICS_ALLOW"))
    app.extensions[EXTENSION_KEY] = Probes(
        stripe=StripeGateway.from_config(config),
        cache_seconds=float(app.config.get("READYZ_STRIPE_CACHE_SECONDS", 5)),
    )
    register_queue(app, ping=jobs.ping, depth=jobs.queue_depth)
    app.register_blueprint(bp)
