"""Work the sandbox clock triggers: renewals, delayed settlements, expiries.

A resource module registers a job kind with :func:`job` and schedules it with
``ctx.store.schedule(due, kind, object_id, **data)``; the clock ticker (and
``/_sandbox/clock/advance``) runs it, at its due time, inside one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .api import Context

JOBS: dict[str, Callable[[Context, str, dict], None]] = {}
log = logging.getLogger("stripe_sandbox")


def job(kind: str):
    def register(fn):
        JOBS[kind] = fn
        return fn

    return register


def run_job(ctx: Context, kind: str, ref: str, data: dict) -> None:
    handler = JOBS.get(kind)
    if handler is None:
        log.warning("no handler for sandbox job %s (%s)", kind, ref)
        return
    handler(ctx, ref, data)
