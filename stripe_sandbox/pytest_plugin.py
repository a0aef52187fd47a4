"""pytest plugin: report (and enforce) the sandbox's conformance over the whole test run.

Test sandboxes run in strict mode, so an object that does not fit the official SDK's typed
model already fails the test that received it (the sandbox answers 500). This plugin adds the
totals at the end of the run -- every API answer and every event checked -- and fails the run
if any answer went unchecked or any check failed. Enable with
``pytest_plugins = ["stripe_sandbox.pytest_plugin"]`` in the root conftest.
"""

from __future__ import annotations

from typing import Any

import pytest

from .testing import SandboxServer


def totals() -> dict:
    keys = ("responses", "checked", "events", "control", "objects", "failed")
    summed: dict[str, Any] = dict.fromkeys(keys, 0)
    failures: list = []
    unchecked: list = []
    for server in SandboxServer.started:
        counts = server.sandbox.conformance
        for key in keys:
            summed[key] += counts[key]
        failures.extend(counts["failures"])
        unchecked.extend(counts["unchecked"])
    summed["failures"] = failures
    summed["unchecked"] = unchecked
    return summed


def _problem(counts: dict) -> str | None:
    if counts["failed"]:
        return f"{counts['failed']} sandbox answers did not fit the SDK's model: {counts['failures'][:3]}"
    if counts["checked"] < counts["responses"]:
        return (
            f"only {counts['checked']} of {counts['responses']} sandbox answers were "
            f"checked; unchecked: {counts['unchecked'][:5]}"
        )
    return None


def pytest_terminal_summary(terminalreporter):
    counts = totals()
    if not counts["responses"]:
        return
    share = 100.0 * counts["checked"] / counts["responses"]
    terminalreporter.write_sep("-", "Stripe sandbox conformance")
    terminalreporter.write_line(
        f"{counts['checked']} of {counts['responses']} API answers ({share:.1f}%), "
        f"{counts['events']} events and {counts['control']} control-route answers checked "
        f"against stripe-python's typed model ({counts['objects']} Stripe objects in them); "
        f"{counts['failed']} failed."
    )
    problem = _problem(counts)
    if problem:
        terminalreporter.write_line("CONFORMANCE FAILURE: " + problem, red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    counts = totals()
    if counts["responses"] and _problem(counts) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
