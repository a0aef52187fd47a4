"""Background work on a task queue (Huey): see :mod:`.queue` for declaring and queueing tasks.

The modules declaring tasks are imported here, so that binding the queue to an app
(:func:`init_app`, called by ``create_app``) registers all of them.
"""

from . import scheduled, tasks
from .queue import (
    Declared,
    crontab,
    declared,
    enqueue,
    get_huey,
    init_app,
    make_consumer,
    periodic_task,
    ping,
    queue_depth,
    task,
)
from .tasks import process_event, sweep_events

__all__ = [
    "Declared",
    "crontab",
    "declared",
    "enqueue",
    "get_huey",
    "init_app",
    "make_consumer",
    "periodic_task",
    "ping",
    "process_event",
    "queue_depth",
    "scheduled",
    "sweep_events",
    "task",
    "tasks",
]
