"""The mail outbox (storefront/services/mail.py) through the real queue and a real SMTP server:
at most one mail per (recipient, kind, object), none for a rolled-back unit, text + HTML parts,
the kind header, retries after a failed SMTP attempt."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storefront.extensions import db
from storefront.models import OutboundMail
from storefront.services import account_mail, mail
from storefront.services.uow import unit_of_work

from . import queue_worker

KIND = account_mail.CHANGE_NOTICE_KIND  # any registered kind would do


def _context() -> dict:
    return {
        "name": "Bea <b>B</b>",
        "old_email": "bea@example.com",
        "new_email": "new@example.net",
        "forgot_url": "http://localhost/forgot-password",
    }


def _queue_three_times() -> list[bool]:
    results = []
    for _ in range(3):
        with unit_of_work():
            results.append(mail.queue_mail(KIND, to=" Bea@Example.com ", about="user:1:change:x", context=_context()))
    return results


def test_queued_mail_arrives_once_with_text_and_html(app, mail_sink):
    with app.app_context():
        assert _queue_three_times() == [True, False, False]
    queue_worker.settle()
    message = mail_sink.wait_for(to="bea@example.com", kind=KIND)
    mail_sink.assert_nothing(settle=0.5, kind="nope")
    assert len(mail_sink.messages(kind=KIND)) == 1
    assert message["Subject"] == "Your email address at Storefront is changing"
    assert "Storefront" in message["From"]
    assert mail_sink.link(message, "/forgot-password") == "http://localhost/forgot-password"
    assert "new@example.net" in mail_sink.text(message)
    # the context is text: as is in the plain part, escaped in the HTML part
    assert "Hello Bea <b>B</b>," in mail_sink.text(message)
    assert "Bea &lt;b&gt;B&lt;/b&gt;" in mail_sink.html(message) and "<b>B</b>" not in mail_sink.html(message)
    assert "http://localhost" in mail_sink.html(message)  # the store's link in the layout
    with app.app_context():
        row = db.session.scalars(select(OutboundMail)).one()
        assert row.sent_at is not None and row.attempts == 1 and row.recipient == "bea@example.com"
        # a second run of the job (a duplicate delivery, the sweeper) sends nothing more
        assert mail.send_stored(row.id) is False
        db.session.remove()
    mail_sink.assert_nothing(settle=0.3, kind="other")
    assert len(mail_sink.messages(kind=KIND)) == 1


def test_rolled_back_unit_sends_nothing(app, mail_sink):
    with app.app_context():
        with pytest.raises(RuntimeError), unit_of_work():
            mail.queue_mail(KIND, to="bea@example.com", about="user:1:change:y", context=_context())
            raise RuntimeError("the unit fails after owing the mail")
        assert db.session.scalars(select(OutboundMail)).all() == []
        db.session.remove()
    queue_worker.settle()
    mail_sink.assert_nothing(settle=1.0)


def test_failed_smtp_is_recorded_and_retried_by_the_sweeper(app, mail_sink):
    port = app.config["MAIL_PORT"]
    app.config["MAIL_PORT"] = 9  # nothing listens there
    try:
        with app.app_context(), unit_of_work():
            mail.queue_mail(KIND, to="bea@example.com", about="user:1:change:z", context=_context())
        queue_worker.settle()
        with app.app_context():
            row = db.session.scalars(select(OutboundMail)).one()
            for _ in range(50):  # the worker's attempt
                db.session.refresh(row)
                if row.last_error:
                    break
                queue_worker.settle()
            assert row.sent_at is None and row.attempts == 1 and row.last_error
            assert row.next_attempt_at is not None
            db.session.remove()
    finally:
        app.config["MAIL_PORT"] = port
    with app.app_context():
        # the backoff and the sweeper's minute have passed
        with unit_of_work():
            row = db.session.scalars(select(OutboundMail)).one()
            row.next_attempt_at = row.created_at
            row.created_at = row.created_at.replace(year=2020)
            row.next_attempt_at = row.created_at
        assert mail.send_due() == 1
        db.session.remove()
    mail_sink.wait_for(to="bea@example.com", kind=KIND)


def test_unknown_kind_and_bad_address_are_refused(app_ctx):
    with pytest.raises(ValueError), unit_of_work():
        mail.queue_mail("no_such_kind", to="a@example.com", about="x", context={})
    with pytest.raises(ValueError), unit_of_work():
        mail.queue_mail(KIND, to="not-an-address", about="x", context={})


def test_store_link_uses_store_url_not_the_request_host(app, client):
    with app.test_request_context("/", base_url="http://evil.example"):
        assert mail.store_link("auth.login") == "http://localhost/login"


def test_old_sent_mails_are_pruned_and_unsent_ones_kept(app, mail_sink):
    from datetime import timedelta

    with app.app_context():
        with unit_of_work():
            mail.queue_mail(KIND, to="a@example.com", about="old-sent", context=_context())
            mail.queue_mail(KIND, to="a@example.com", about="old-unsent", context=_context())
        queue_worker.settle()
        mail_sink.wait_for(to="a@example.com", kind=KIND, count=2)
        queue_worker.settle()
        with unit_of_work():
            rows = db.session.scalars(select(OutboundMail)).all()
            for row in rows:
                row.created_at = row.created_at - timedelta(days=91)
            unsent = next(row for row in rows if row.about == "old-unsent")
            unsent.sent_at, unsent.next_attempt_at = None, unsent.created_at
        assert mail.prune() == 1
        assert [row.about for row in db.session.scalars(select(OutboundMail))] == ["old-unsent"]
        db.session.remove()
