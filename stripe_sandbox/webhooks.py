"""Events and their delivery to webhook endpoints, signed as Stripe signs them.

Every state change calls :func:`create_event`, which stores the event (``GET /v1/events``) and
queues one delivery per enabled endpoint. A :class:`Sender` thread POSTs due deliveries with a
``Stripe-Signature`` header (``t=<unix time>,v1=<HMAC-SHA256(secret, "t.payload")>``) that
``stripe.Webhook.construct_event`` accepts, and retries a non-2xx answer or a timeout with
exponential backoff. Every attempt is logged in the ``deliveries`` table.

Faults for tests (``/_sandbox/webhooks/faults``): deliver every event twice, hold deliveries for
a delay, hold them until released and then deliver them newest first, or drop the next N.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import ClassVar

from .expand import strip_includables
from .primitives import API_VERSION, new_id, public
from .store import Store


def create_event(
    store: Store,
    event_type: str,
    obj: dict,
    previous_attributes: dict | None,
    *,
    request_id: str,
    idempotency_key: str | None,
) -> dict:
    """Store the event (``GET /v1/events``) and queue one delivery per enabled endpoint."""
    data = {"object": public(strip_includables(copy.deepcopy(obj)))}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    endpoints = [
        e
        for e in store.all("webhook_endpoint")
        if e["status"] == "enabled" and ("*" in e["enabled_events"] or event_type in e["enabled_events"])
    ]
    event = {
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": store.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": len(endpoints),
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }
    store.put(event)
    _queue(store, event, endpoints)
    return event


def _queue(store: Store, event: dict, endpoints: list[dict]) -> None:
    faults = store.meta_json("webhook_faults", {})
    now = time.time()
    for endpoint in endpoints:
        copies = 2 if faults.get("duplicate") else 1
        for _ in range(copies):
            status, due = "pending", now + float(faults.get("delay", 0))
            if faults.get("drop", 0) > 0:
                faults["drop"] -= 1
                status = "dropped"
            elif faults.get("hold"):
                status = "held"
            store.execute(
                "INSERT INTO deliveries (event_id, endpoint_id, status, next_attempt, created) VALUES (?, ?, ?, ?, ?)",
                (event["id"], endpoint["id"], status, due, now),
            )
    store.set_meta_json("webhook_faults", faults)
    store.after_commit(Sender.wake_all)


def release_held(store: Store, newest_first: bool = True) -> int:
    """Send held deliveries, newest first by default (to test out-of-order handling)."""
    with store.transaction():
        rows = store.execute("SELECT id FROM deliveries WHERE status = 'held' ORDER BY id").fetchall()
        if newest_first:
            rows.reverse()
        now = time.time()
        for position, (delivery_id,) in enumerate(rows):
            store.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt = ? WHERE id = ?",
                (now + position * 0.001, delivery_id),
            )
    Sender.wake_all()
    return len(rows)


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def delivery_log(store: Store, limit: int = 200) -> list[dict]:
    rows = store.execute(
        "SELECT d.id, d.event_id, d.endpoint_id, d.status, d.attempts, d.next_attempt, "
        "d.created, d.last_status, d.last_error, d.delivered, d.log, "
        "json_extract(o.data, '$.type') FROM deliveries d LEFT JOIN objects o "
        "ON o.id = d.event_id ORDER BY d.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = (
        "id",
        "event_id",
        "endpoint_id",
        "status",
        "attempts",
        "next_attempt",
        "created",
        "last_status",
        "last_error",
        "delivered",
        "attempt_log",
        "event_type",
    )
    out = []
    for row in rows:
        item = dict(zip(keys, row, strict=True))
        item["attempt_log"] = json.loads(item["attempt_log"])
        out.append(item)
    return out


class Sender:
    """Background thread that delivers due webhooks; one per sandbox app."""

    _instances: ClassVar[list[Sender]] = []

    def __init__(self, store: Store, *, timeout: float = 10.0, retry_base: float = 2.0, max_attempts: int = 8):
        self.store = store
        self.timeout = timeout
        self.retry_base = retry_base
        self.max_attempts = max_attempts
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._paused = threading.Event()
        self._busy = threading.Lock()  # held while a delivery is claimed and sent
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)

    @classmethod
    def wake_all(cls) -> None:
        for sender in cls._instances:
            sender._wake.set()

    def start(self) -> None:
        Sender._instances.append(self)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self in Sender._instances:
            Sender._instances.remove(self)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no delivery is due now (sent, scheduled for a later retry, or held)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.store.lock:
                due = self.store.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending') AND next_attempt <= ?",
                    (time.time(),),
                ).fetchone()[0]
            if not due:
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    @contextlib.contextmanager
    def paused(self, timeout: float = 10.0) -> Iterator[None]:
        """No delivery in flight while the block runs (one being sent is waited for), none
        started until it ends: for a test harness that resets the receiver's database."""
        self._paused.set()
        acquired = self._busy.acquire(timeout=timeout)
        try:
            yield
        finally:
            if acquired:
                self._busy.release()
            self._paused.clear()
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                self._wake.wait(timeout=0.05)
                continue
            with self._busy:
                job = self._claim()
                if job is not None:
                    self._deliver(*job)
            if job is None:
                self._wake.wait(timeout=self._seconds_to_next())
                self._wake.clear()

    def _seconds_to_next(self) -> float:
        with self.store.lock:
            row = self.store.execute("SELECT MIN(next_attempt) FROM deliveries WHERE status = 'pending'").fetchone()
        if row[0] is None:
            return 1.0
        return max(0.0, min(1.0, row[0] - time.time()))

    def _claim(self):
        with self.store.transaction():
            row = self.store.execute(
                "SELECT d.id, d.event_id, d.endpoint_id, d.attempts FROM deliveries d "
                "WHERE d.status = 'pending' AND d.next_attempt <= ? "
                "ORDER BY d.next_attempt, d.id LIMIT 1",
                (time.time(),),
            ).fetchone()
            if row is None:
                return None
            event, endpoint = self.store.get(row[1]), self.store.get(row[2])
            if event is None or endpoint is None:
                self.store.execute("UPDATE deliveries SET status = 'abandoned' WHERE id = ?", (row[0],))
                return ()
            self.store.execute("UPDATE deliveries SET status = 'sending' WHERE id = ?", (row[0],))
        return row[0], event, endpoint, row[3]

    def _deliver(self, delivery_id=None, event=None, endpoint=None, attempts=0) -> None:
        if delivery_id is None:
            return
        started, status, error = self._post(event, endpoint)
        entry = {
            "at": started,
            "status": status,
            "error": error,
            "duration_ms": round((time.time() - started) * 1000, 1),
        }
        self._record(delivery_id, event, attempts + 1, entry)

    def _post(self, event: dict, endpoint: dict) -> tuple[float, int | None, str | None]:
        """POST the signed event; returns when it started, the answer's status, the error."""
        payload = json.dumps(event, indent=2)
        request = urllib.request.Request(  # noqa: S310 - http(s) only: checked when the endpoint was stored
            endpoint["url"],
            data=payload.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": sign(payload, endpoint["secret"]),
            },
        )
        started = time.time()
        status, error = None, None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - as above
                status = response.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except Exception as exc:  # noqa: BLE001 - timeout, refused connection...: logged, retried
            error = f"{type(exc).__name__}: {exc}"
        return started, status, error

    def _record(self, delivery_id, event: dict, attempts: int, entry: dict) -> None:
        """Log the attempt; delivered, failed for good, or pending a retry with backoff."""
        status, error = entry["status"], entry["error"]
        with self.store.transaction():
            row = self.store.execute("SELECT log FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            if row is None:  # the sandbox was reset while this delivery was in flight
                return
            log = json.loads(row[0])
            log.append(entry)
            ok = status is not None and 200 <= status < 300
            if ok:
                state, next_attempt = "delivered", time.time()
                stored = self.store.get(event["id"])
                if stored:
                    stored["pending_webhooks"] = max(0, stored["pending_webhooks"] - 1)
                    self.store.put(stored)
            elif attempts >= self.max_attempts:
                state, next_attempt = "failed", time.time()
            else:
                state = "pending"
                next_attempt = time.time() + self.retry_base * (2 ** (attempts - 1))
            self.store.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, next_attempt = ?, "
                "last_status = ?, last_error = ?, delivered = ?, log = ? WHERE id = ?",
                (
                    state,
                    attempts,
                    next_attempt,
                    status,
                    error,
                    time.time() if ok else None,
                    json.dumps(log),
                    delivery_id,
                ),
            )
