"""The admin's Stripe events page: each event's state (processed, pending, retrying with its
next attempt, failed with its last error, escaped and cut), the filter by state (an unknown state
is a 400), the count of failed events at the top, and the page closed to everyone but admins."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from storefront.extensions import db
from storefront.models import utcnow
from storefront.services import admin_events

from .factories import make_stripe_event

LONG_ERROR = "RuntimeError: <script>alert(1)</script> " + "x" * 300


@pytest.fixture
def events(app):
    """One stored event in each state (and a failed retry that is due: pending)."""
    now = utcnow()
    with app.app_context():
        made = {
            "processed": make_stripe_event(stripe_id="evt_processed", processed_at=now, attempts=1),
            "pending": make_stripe_event(stripe_id="evt_pending", next_attempt_at=now - timedelta(seconds=1)),
            "due_retry": make_stripe_event(
                stripe_id="evt_due_retry", attempts=1, error="TimeoutError: slow", next_attempt_at=now
            ),
            "retrying": make_stripe_event(
                stripe_id="evt_retrying",
                attempts=2,
                error="GatewayError: <b>Stripe</b> said 500",
                next_attempt_at=now + timedelta(minutes=10),
            ),
            "failed": make_stripe_event(stripe_id="evt_failed", attempts=8, error=LONG_ERROR, next_attempt_at=None),
        }
        db.session.commit()
        return {key: row.id for key, row in made.items()}


def states(html: str) -> dict[str, str]:
    """Event id -> the state its row shows."""
    return dict(re.findall(r'<tr data-event="(evt_[a-z_]+)" data-state="([a-z]+)">', html))


def row_of(html: str, stripe_id: str) -> str:
    match = re.search(rf'<tr data-event="{stripe_id}".*?</tr>', html, re.S)
    assert match, f"no row for {stripe_id}"
    return match.group(0)


def test_each_event_shows_its_state(admin, events):
    page = admin.get("/admin/events")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert states(html) == {
        "evt_processed": "processed",
        "evt_pending": "pending",
        "evt_due_retry": "pending",
        "evt_retrying": "retrying",
        "evt_failed": "failed",
    }
    retrying = row_of(html, "evt_retrying")
    assert "next attempt <time" in retrying and '<td class="num">2</td>' in retrying
    assert "&lt;b&gt;Stripe&lt;/b&gt; said 500" in retrying and "<b>Stripe</b>" not in retrying
    failed = row_of(html, "evt_failed")
    assert '<td class="num">8</td>' in failed
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in failed
    assert "x" * 300 not in failed and "x" * 50 + "…" in failed  # the last error, cut
    # the replay button stays: on the failed row, and on the event's own page
    assert f'action="/admin/events/{events["failed"]}/replay"' in failed
    assert "/replay" not in row_of(html, "evt_processed")
    assert f'action="/admin/events/{events["processed"]}/replay"' in admin.get(
        f"/admin/events/{events['processed']}"
    ).get_data(as_text=True)


def test_the_failed_events_are_counted_at_the_top(admin, app, events):
    html = admin.get("/admin/events").get_data(as_text=True)
    assert 'data-failed-count="1"' in html and "1 event failed" in html
    assert html.index("data-failed-count") < html.index("<table")
    assert 'href="/admin/events?state=failed"' in html
    with app.app_context():
        make_stripe_event(stripe_id="evt_failed_too", attempts=8, error="x")
        db.session.commit()
        assert admin_events.failed_count() == 2
    assert "2 events failed" in admin.get("/admin/events").get_data(as_text=True)


def test_no_failed_events_no_alarm(admin, app):
    with app.app_context():
        make_stripe_event(stripe_id="evt_processed", processed_at=utcnow(), attempts=1)
        db.session.commit()
    html = admin.get("/admin/events").get_data(as_text=True)
    assert "data-failed-count" not in html and states(html) == {"evt_processed": "processed"}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("failed", {"evt_failed"}),
        ("retrying", {"evt_retrying"}),
        ("pending", {"evt_pending", "evt_due_retry"}),
        ("processed", {"evt_processed"}),
        ("", {"evt_processed", "evt_pending", "evt_due_retry", "evt_retrying", "evt_failed"}),
    ],
)
def test_the_filter_by_state(admin, events, state, expected):
    response = admin.get(f"/admin/events?state={state}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert set(states(html)) == expected
    assert all(shown == state for shown in states(html).values()) or not state
    if state:
        assert f'<option value="{state}" selected>' in html


def test_the_state_filter_combines_with_the_others_and_pages_keep_it(admin, app, events, monkeypatch):
    from storefront.web import admin as admin_views

    html = admin.get("/admin/events?state=pending&q=evt_pending").get_data(as_text=True)
    assert set(states(html)) == {"evt_pending"}
    monkeypatch.setattr(admin_views, "EVENTS_PAGE", 1)
    html = admin.get("/admin/events?state=pending").get_data(as_text=True)
    assert set(states(html)) == {"evt_due_retry"}  # newest first
    older = re.search(r'href="([^"]*before=\d+[^"]*)" rel="next"', html)
    assert older and "state=pending" in older.group(1)
    html = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert set(states(html)) == {"evt_pending"}


@pytest.mark.parametrize("state", ["nope", "FAILED", "failed'--", "%00", "x" * 500])
def test_an_unknown_state_is_a_400_with_a_message(admin, events, state):
    response = admin.get("/admin/events", query_string={"state": state})
    assert response.status_code == 400
    assert "must be one of: failed, retrying, pending, processed" in response.get_data(as_text=True)


def test_only_admins_see_the_events(app, client, buyer, events):
    assert buyer.get("/admin/events").status_code == 403
    assert buyer.get("/admin/events?state=failed").status_code == 403
    assert buyer.post(f"/admin/events/{events['failed']}/replay").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(app, sandbox, events):
    response = app.test_client().get("/admin/events?state=failed")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
