"""Prometheus metrics: their definitions, the hooks that feed them and the scrape.

Every label is bounded: routes are URL rules (``/orders/<public_id>``, never a raw path), Stripe
endpoints are SDK method names (``PaymentIntentService.retrieve``), outcomes are order statuses.

**Several processes.** With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts:
prometheus-client reads it when it is imported) every process writes its figures to files in that
directory and a scrape adds them up (``MultiProcessCollector``), so any gunicorn worker answers
for all of them (and a queue worker on the same machine sharing the directory is counted too).
``gunicorn.conf.py`` marks a dead worker's files; ``scripts/run.sh`` sets the directory. Without
it each process counts for itself (tests, a bare ``flask run``).

**Payment outcomes** count order moves that were committed: :func:`record_order_move` notes the
move on the database session and the count happens after that session commits (a rolled-back
move counts nothing).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "multiprocess_dir",
    "observe_job",
    "observe_request",
    "observe_stripe_call",
    "observe_webhook_lag",
    "record_order_move",
    "render",
]

#: the store's own registry (not prometheus-client's global one): what a single process serves
REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter(
    "storefront_http_requests",
    "HTTP requests answered, by route (URL rule), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "storefront_http_request_duration_seconds",
    "Time to answer an HTTP request, by route (URL rule) and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PAYMENT_OUTCOMES = Counter(
    "storefront_payment_outcomes",
    "Committed order moves, by the status reached (paid, failed, requires_action, ...) and payment method.",
    ["outcome", "method"],
    registry=REGISTRY,
)
WEBHOOK_LAG = Histogram(
    "storefront_webhook_lag_seconds",
    "From a Stripe event's `created` to its processing by the store, by event type.",
    ["event_type"],
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)
STRIPE_DURATION = Histogram(
    "storefront_stripe_request_duration_seconds",
    "Stripe API calls (SDK retries included), by SDK method.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
STRIPE_ERRORS = Counter(
    "storefront_stripe_errors",
    "Stripe API calls that failed, by SDK method and Stripe error class (CardError, APIConnectionError, ...).",
    ["endpoint", "error"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "storefront_job_duration_seconds",
    "Queue jobs run, by task and outcome (ok, error).",
    ["task", "outcome"],
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)


#: (route, method, status) -> the counter's and histogram's children: ``labels()`` takes a lock
#: and builds a key on every call; routes are bounded, and the cache is emptied if it grows
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        if len(_REQUEST_CHILDREN) >= 2048:  # odd methods: stay bounded
            _REQUEST_CHILDREN.clear()
        children = _REQUEST_CHILDREN[key] = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_DURATION.labels(route, method),
        )
    children[0].inc()
    children[1].observe(seconds)


def observe_stripe_call(endpoint: str, seconds: float, error: str | None = None) -> None:
    STRIPE_DURATION.labels(endpoint).observe(seconds)
    if error is not None:
        STRIPE_ERRORS.labels(endpoint, error).inc()


def observe_webhook_lag(event_created: int | float | None, event_type: str) -> None:
    """A Stripe event was processed now: its lag from Stripe's ``created`` (Unix seconds)."""
    if event_created:
        WEBHOOK_LAG.labels(event_type or "unknown").observe(max(0.0, time.time() - float(event_created)))


def observe_job(task: str, seconds: float, outcome: str) -> None:
    JOB_DURATION.labels(task, outcome).observe(seconds)


# --- payment outcomes, counted once their transaction commits ----------------------------------------------

_PENDING_MOVES = "storefront.metrics.order_moves"


def record_order_move(session: Session, status: str, method: str | None) -> None:
    """An order moved to ``status`` in ``session``'s transaction: counted if it commits."""
    session.info.setdefault(_PENDING_MOVES, []).append((str(status), method or "unknown"))


@event.listens_for(Session, "after_commit")
def _count_committed_moves(session: Session) -> None:
    for outcome, method in session.info.pop(_PENDING_MOVES, ()):
        PAYMENT_OUTCOMES.labels(outcome, method).inc()


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back_moves(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:  # a savepoint's rollback leaves the outer moves pending
        session.info.pop(_PENDING_MOVES, None)


# --- the scrape ---------------------------------------------------------------------------------------------


class GaugeAtScrape(Collector):
    """A gauge read when Prometheus scrapes (the queue's depth: one question to the queue per
    scrape, asked by the process that answers it, so nothing is added up twice)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float | None]):
        self.name = name
        self.documentation = documentation
        self.read = read

    def collect(self) -> Iterator[Metric]:
        value = self.read()
        if value is not None:
            yield GaugeMetricFamily(self.name, self.documentation, value=value)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render(extra: list[Collector]) -> bytes:
    """The exposition text: every process's figures in multiprocess mode, else this one's;
    plus ``extra`` collectors read now."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Own())
        ProcessCollector(registry=registry)  # CPU, memory, open files (of this one process)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


class _Own(Collector):
    """This process's metrics, as a collector (so a per-scrape registry can hold them)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
