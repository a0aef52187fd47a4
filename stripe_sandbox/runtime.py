"""One running sandbox (:class:`Sandbox`: store, webhook sender, clock ticker, conformance
counters) and how a view finds it: :func:`sandbox_of`, :func:`base_url`, :func:`page_context`.

The API view (``app``), the control routes and the browser pages all import this module; it
imports none of them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import current_app, g, has_request_context, request

from .api import Context
from .conformance import error_shape_errors, shape_errors
from .jobs import run_job
from .primitives import new_id
from .store import Store
from .webhooks import Sender

#: the business name the browser pages show when none is configured
DEFAULT_MERCHANT_NAME = "Storefront (sandbox)"
log = logging.getLogger("stripe_sandbox")


class Sandbox:
    """Everything one running sandbox owns: store, webhook sender, clock ticker, counters."""

    def __init__(self, store: Store, *, strict: bool, sender: Sender, tick: float, merchant_name: str | None = None):
        self.store = store
        #: the business name shown on the pages and as an invoice's ``account_name`` (None: the
        #: defaults, DEFAULT_MERCHANT_NAME on the pages and "Stripe Sandbox" on invoices)
        self.merchant_name = merchant_name
        self.strict = strict
        self.sender = sender
        self.tick = tick
        #: responses: API answers sent; checked: answers (and events) checked against the SDK
        #: model; objects: Stripe objects inside them (nested and expanded ones included)
        self.conformance: dict[str, Any] = {
            "responses": 0,
            "checked": 0,
            "events": 0,
            "control": 0,
            "objects": 0,
            "failed": 0,
            "failures": [],
            "unchecked": [],
        }
        self._counter_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._run_ticker, name="sandbox-clock", daemon=True)

    def start(self) -> None:
        self.sender.start()
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self.sender.stop()
        self._ticker.join(timeout=5)

    @property
    def display_name(self) -> str:
        """The business name the pages show."""
        return self.merchant_name or DEFAULT_MERCHANT_NAME

    def context(self, base_url: str = "", *, key_kind: str = "secret", idempotency_key: str | None = None) -> Context:
        """A handler's :class:`~.api.Context` for one request, job or page action."""
        return Context(self.store, key_kind, new_id("req"), idempotency_key, base_url, merchant_name=self.merchant_name)

    # --- conformance -----------------------------------------------------------------------
    def check(self, body: dict, *, is_error: bool = False) -> list[str]:
        """Check an answer; API answers count as ``checked``, control-route answers as
        ``control``, so ``checked`` can be compared with ``responses``."""
        api_answer = has_request_context() and request.path.startswith("/v1/")
        if api_answer:
            g.sandbox_answer_checked = True
        return self._check(body, "checked" if api_answer else "control", is_error)

    def check_event(self, event: dict) -> list[str]:
        return self._check(event, "events", False)

    def _check(self, body: dict, counter: str, is_error: bool) -> list[str]:
        problems = error_shape_errors(body) if is_error else _all_shape_errors(body)
        with self._counter_lock:
            self.conformance[counter] += 1
            self.conformance["objects"] += _count_objects(body)
            if problems:
                self.conformance["failed"] += 1
                self.conformance["failures"].append(problems[:5])
        return problems

    # --- scheduled jobs (clock) ------------------------------------------------------------
    def run_due_jobs(self, until: int | None = None) -> int:
        ran = 0
        while True:
            with self.store.transaction():
                job = self.store.pop_due_job(self.store.now() if until is None else until)
                if job is None:
                    return ran
                due, kind, ref, data = job
                ctx = self.context()
                with self.store.frozen_at(max(due, self.store.now()) if until is None else due):
                    run_job(ctx, kind, ref, data)
                    for event in ctx.events:
                        self.check_event(event)
            ran += 1

    def _run_ticker(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_due_jobs()
            except Exception:
                log.exception("sandbox job failed")


def _all_shape_errors(body: dict) -> list[str]:
    problems = shape_errors(body)
    if body.get("object") == "event":
        problems += shape_errors(body["data"]["object"])
    return problems


def _count_objects(body) -> int:
    if isinstance(body, dict):
        own = 1 if "object" in body and body.get("object") != "list" else 0
        return own + sum(_count_objects(v) for v in body.values())
    if isinstance(body, list):
        return sum(_count_objects(v) for v in body)
    return 0


def sandbox_of(app=None) -> Sandbox:
    return (app or current_app).extensions["sandbox"]


def base_url() -> str:
    return current_app.config.get("SANDBOX_PUBLIC_URL") or request.host_url.rstrip("/")


def page_context() -> Context:
    """The context a page or control route runs sandbox code in (secret key, this request)."""
    return sandbox_of().context(base_url())
