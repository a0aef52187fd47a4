"""The fuzz suite's fixtures: one seeded store for the whole module (tables are emptied once,
at the end, not after every test) and the run's summary line."""

from __future__ import annotations

import logging
import os
import time

import pytest

from storefront.extensions import limiter

from ..conftest import _clean_tables, clear_cache
from .harness import STATS, seed_world
from .strategies import RecordingMultiDict, warm_up


@pytest.fixture(scope="module")
def world(app, _sandbox, sandbox_server, worker):
    _sandbox.reset()
    _clean_tables(app)
    with app.app_context():
        limiter.reset()
    saved = {key: app.config.get(key) for key in ("WTF_CSRF_ENABLED", "STRIPE_WEBHOOK_SECRET")}
    logger = logging.getLogger("storefront")
    started = time.monotonic()
    request_class = app.request_class
    # learn which query/form keys each view reads (used to pick keys; see strategies.LEARNED)
    app.request_class = type("RecordingRequest", (request_class,), {"parameter_storage_class": RecordingMultiDict})
    world = seed_world(app, _sandbox, sandbox_server.sandbox.store.path)
    STATS.timing["seeding"] += time.monotonic() - started
    world.client = app.test_client(use_cookies=False)
    warm_up(world)
    logger.addHandler(world.capture)
    try:
        yield world
    finally:
        STATS.seconds += time.monotonic() - started
        logger.removeHandler(world.capture)
        world.sandbox_fp.close()
        world.db_fp.close()
        app.config.update(saved)
        app.request_class = request_class
        _clean_tables(app)
        with app.app_context():
            limiter.reset()
        _sandbox.reset()
        clear_cache(app)


def pytest_terminal_summary(terminalreporter):
    if STATS.requests:
        terminalreporter.write_sep("-", "fuzz")
        terminalreporter.write_line(STATS.summary())
        for failure in sorted(STATS.failures.values(), key=lambda f: (f.endpoint, f.method)):
            terminalreporter.write_line(
                f"  {failure.kind}: {failure.method} {failure.endpoint} as "
                f"{failure.identity} -> {failure.status} (x{failure.count})"
            )
    report = os.environ.get("FUZZ_REPORT")
    if report and STATS.requests:
        with open(report, "w", encoding="utf-8") as out:
            out.write(STATS.report_markdown())
