"""The task queue: Huey, with SQLite storage by default and Redis when ``QUEUE_URL`` /
``REDIS_URL`` is set.

Tasks are declared once, on plain functions, at import time (:func:`task`,
:func:`periodic_task`); nothing is read from the settings then. :func:`init_app` builds one Huey
instance per app from its config and registers every declared task on it, wrapped so that it
runs inside that app's context (the worker's app, made by ``create_app`` from the same
settings as the web app). A declared function stays a plain function: tests and ``flask``
commands may call it directly.

Why Huey: it has an embedded default (SQLite: ``bash scripts/run.sh`` needs no broker), Redis for
several machines, delayed tasks and a periodic scheduler in the consumer, and a small API
(RQ needs Redis; Dramatiq and Celery need a broker, and Celery is much larger).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from huey import Huey, PriorityRedisHuey, SqliteHuey, crontab
from huey.api import TaskWrapper
from huey.consumer import Consumer
from redis import ConnectionPool

from .. import log_setup
from ..config import ConfigError

log = logging.getLogger(__name__)

__all__ = ["Declared", "crontab", "declared", "enqueue", "get_huey", "init_app", "periodic_task", "ping", "task"]

EXTENSION_KEY = "storefront.queue"

Schedule = Callable[[Any], bool]


@dataclass(frozen=True)
class Declared:
    """A task as declared: its name (``module.function``), the function, and for a periodic
    task its schedule (a Huey ``crontab``) and a description of it for people."""

    name: str
    func: Callable[..., Any]
    schedule: Schedule | None = None
    every: str | None = None
    priority: int = 0


_declared: dict[str, Declared] = {}


def _register(declaration: Declared) -> None:
    existing = _declared.get(declaration.name)
    if existing is not None and existing.func is not declaration.func:
        raise ValueError(f"task {declaration.name} is declared twice")
    _declared[declaration.name] = declaration


def _name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def task(priority: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the decorated function a task (enqueue it with :func:`enqueue`). Waiting tasks of
    a higher ``priority`` run first (a burst of payments before the mail it owes)."""

    def declare(func: Callable[..., Any]) -> Callable[..., Any]:
        _register(Declared(_name(func), func, priority=priority))
        return func

    return declare


def periodic_task(schedule: Schedule, every: str = "") -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Declare the decorated function (no arguments) a periodic task, run by the workers'
    scheduler when ``schedule`` (``crontab(minute="*")``...) matches; ``every`` describes it
    for the admin ("every minute"). Several workers may each run it: make it idempotent."""

    def declare(func: Callable[[], Any]) -> Callable[[], Any]:
        _register(Declared(_name(func), func, schedule, every or None))
        return func

    return declare


def declared() -> list[Declared]:
    """Every declared task, periodic ones included, in declaration order."""
    return list(_declared.values())


# --- binding to an app --------------------------------------------------------------------------


@dataclass
class Queue:
    """One app's queue: its Huey instance and the registered wrapper of each declared task."""

    huey: Huey
    tasks: dict[str, TaskWrapper]


def make_huey(config: dict[str, Any]) -> Huey:
    """The Huey instance the settings ask for: Redis (``QUEUE_URL`` or ``REDIS_URL``, a
    ``redis://`` URL; a sorted set, for the tasks' priorities, on which workers block instead of
    polling) or a SQLite file (priorities too).
    ``QUEUE_NAME`` keeps two stores (or test runs) on one Redis apart."""
    name = str(config.get("QUEUE_NAME") or "storefront")
    url = config.get("QUEUE_URL") or config.get("REDIS_URL")
    if url:
        if not str(url).startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"QUEUE_URL must be a redis:// URL (got {str(url).split(':', 1)[0]}:…).")
        # a Redis that doesn't answer fails fast (the webhook view must still answer Stripe);
        # the socket timeout outlasts the workers' 1 s blocking pop
        pool = ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        return PriorityRedisHuey(name, connection_pool=pool, blocking=True, read_timeout=1, results=False, utc=True)
    path = Path(config["QUEUE_SQLITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(path), results=False, utc=True, timeout=30)


def init_app(app: Flask, huey: Huey | None = None) -> Queue:
    """Bind the queue to ``app``: build its Huey instance (or use ``huey``) and register every
    declared task on it, each running inside ``app``'s context."""
    huey = huey or make_huey(app.config)
    wrappers: dict[str, TaskWrapper] = {}
    for declaration in _declared.values():
        runner = _in_app_context(app, declaration.func)
        if declaration.schedule is None:
            wrappers[declaration.name] = huey.task(name=declaration.name, priority=declaration.priority)(runner)
        else:
            wrappers[declaration.name] = huey.periodic_task(declaration.schedule, name=declaration.name)(runner)
    queue = Queue(huey, wrappers)
    app.extensions[EXTENSION_KEY] = queue
    return queue


def _in_app_context(app: Flask, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        ids = [arg for arg in args if isinstance(arg, int)] or None  # ids only in the job's log line
        with app.app_context(), log_setup.job_scope(func.__name__, args=ids):
            return func(*args, **kwargs)

    return run


def get_queue(app: Flask | None = None) -> Queue:
    queue: Queue = (app or current_app).extensions[EXTENSION_KEY]
    return queue


def get_huey(app: Flask | None = None) -> Huey:
    """The Huey instance of ``app`` (default: the current app)."""
    return get_queue(app).huey


# --- using it ------------------------------------------------------------------------------------


def enqueue(func: Callable[..., Any], *args: Any, delay: float | None = None) -> None:
    """Queue a run of the declared task ``func`` with ``args`` (after ``delay`` seconds).
    Raises what the storage raises when the queue is down: callers that must not fail catch."""
    wrapper = get_queue().tasks[_name(func)]
    if delay:
        wrapper.schedule(args=args, delay=delay)
    else:
        wrapper(*args)


def queue_depth() -> int:
    """How many tasks wait in the queue (not the scheduled ones)."""
    return int(get_huey().pending_count())


def ping() -> None:
    """Raise when the queue's storage can't be reached (a cheap round trip)."""
    huey = get_huey()
    conn = getattr(huey.storage, "conn", None)
    if conn is not None and hasattr(conn, "ping"):  # Redis
        conn.ping()
    else:
        huey.pending_count()


def make_consumer(app: Flask, workers: int = 1, **options: Any) -> Consumer:
    """A Huey consumer of ``app``'s queue with ``workers`` threads."""
    return get_huey(app).create_consumer(workers=workers, worker_type="thread", **options)
