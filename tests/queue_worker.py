"""The real queue in tests: the app's Huey (SQLite in a temp dir) and a real consumer whose
worker threads run in the test process (not Huey's immediate mode, which would hide ordering,
retries and a queue that is down).

``settle()`` waits until every stored webhook event is processed or has failed and nothing
is queued or running; the per-test clean-up waits for :meth:`Worker.wait_idle` before emptying
the tables (a task running during PostgreSQL's TRUNCATE deadlocks).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from huey import RedisHuey
from huey.consumer import Consumer
from sqlalchemy import func, select

from storefront import jobs
from storefront.extensions import db
from storefront.models import StripeEvent


class _ThreadConsumer(Consumer):
    def _set_signal_handlers(self) -> None:
        """Leave the test runner's signal handlers alone (Ctrl-C stops pytest, as ever)."""


class Worker:
    """A Huey consumer of ``app``'s queue: two worker threads that poll every 10-100 ms when
    idle (the default backs off to 10 s), no periodic tasks (tests run the sweeper themselves)."""

    def __init__(self, app, workers: int = 2):
        self.app = app
        self.huey = jobs.get_huey(app)
        self._running = 0
        self._changed = threading.Condition()
        self._count_executions()
        self.consumer = _ThreadConsumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            initial_delay=0.01,
            backoff=1.5,
            max_delay=0.1,
            scheduler_interval=1,
            check_worker_health=False,
        )
        self.consumer.start()

    def _count_executions(self) -> None:
        """Count the tasks running by wrapping Huey's ``execute`` (what a consumer's worker calls
        for each task), not by its signals: a task whose bookkeeping after the run fails (the
        storage became unreachable while it ran: ``queue_down``) never signals its end."""
        execute = self.huey.execute

        def counted(task, timestamp=None):
            with self._changed:
                self._running += 1
            try:
                return execute(task, timestamp)
            finally:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

        self.huey.execute = counted

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Drop what is still queued or scheduled, then wait until no task runs (twice in a row,
        a few ms apart: a task just taken from the queue signals a moment later)."""
        self.huey.storage.flush_queue()
        self.huey.storage.flush_schedule()
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:
            with self._changed:
                assert self._changed.wait_for(lambda: self._running == 0, max(deadline - time.monotonic(), 0)), (
                    f"{self._running} task(s) still running after {timeout} s"
                )
            time.sleep(0.02)
            quiet = quiet + 1 if self._running == 0 else 0

    def settle(self, timeout: float = 20.0) -> None:
        """Until every stored event is processed (or failed: an error recorded), nothing is
        queued and no task runs."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            waiting = self.unsettled()
            if waiting == 0 and self.huey.pending_count() == 0 and self._running == 0:
                quiet += 1
                if quiet == 2:  # twice, 20 ms apart: a task just dequeued is not yet counted as running
                    return
            else:
                quiet = 0
            assert time.monotonic() < deadline, (
                f"not settled after {timeout} s: {waiting} event(s) waiting, "
                f"{self.huey.pending_count()} task(s) queued, {self._running} running"
            )
            time.sleep(0.02)

    def unsettled(self) -> int:
        """Stored events neither processed nor failed yet."""
        with self.app.app_context():
            count = db.session.scalar(
                select(func.count())
                .select_from(StripeEvent)
                .where(
                    StripeEvent.processed_at.is_(None),
                    StripeEvent.error.is_(None),
                    StripeEvent.next_attempt_at.is_not(None),
                )
            )
            db.session.remove()
        return int(count or 0)

    def stop(self) -> None:
        self.consumer.stop(graceful=True)


_worker: Worker | None = None


def start(app) -> Worker:
    global _worker
    if _worker is None:
        _worker = Worker(app)
    return _worker


def stop() -> None:
    global _worker
    if _worker is not None:
        _worker.stop()
        _worker = None


@contextlib.contextmanager
def queue_down(app) -> Iterator[None]:
    """The app's queue unreachable, as when Redis is stopped: its storage is a Redis on a port
    nothing listens on (the web app cannot enqueue, the workers cannot dequeue) until the block
    ends."""
    huey = jobs.get_huey(app)
    real = huey.storage
    huey.storage = RedisHuey("storefront", url="redis://127.0.0.1:9/0", results=False).storage
    try:
        yield
    finally:
        huey.storage = real


def settle(timeout: float = 20.0) -> None:
    """Wait until the queue has done everything the test caused (see :meth:`Worker.settle`)."""
    assert _worker is not None, "no queue worker is running (use the app fixture)"
    _worker.settle(timeout)
