"""The sandbox's mail catcher (storefront/mail_catcher.py), its ``flask mail-catcher`` command, the
``/dev/mail`` page that shows what it caught, and live mode refusing to start without SMTP.

Messages reach the catcher over real SMTP (smtplib to aiosmtpd on a free port); the page is read
over the test client from files the catcher wrote.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from storefront import ConfigError, create_app
from storefront.config import load_settings
from storefront.mail_catcher import NAME_RE, MailCatcher, list_messages, prune, read_message, write_message

from .conftest import found

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = secrets.token_hex(32)
LIVE_ENV = {
    "STRIPE_SECRET_KEY": "sk_live_abc",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
    "STRIPE_WEBHOOK_SECRET": "whsec_abc",
    "SECRET_KEY": GOOD_KEY,
    "STORE_URL": "https://shop.example",
}
LIVE_MAIL = {"MAIL_SERVER": "smtp.example.com", "MAIL_DEFAULT_SENDER": "Shop <shop@shop.example>"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mail(to: str, subject: str, kind: str | None, text: str, html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Storefront <no-reply@storefront.test>"
    message["To"] = to
    message["Subject"] = subject
    if kind:
        message["X-Storefront-Kind"] = kind
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def _send(port: int, message: EmailMessage, **kwargs) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(message, **kwargs)


@pytest.fixture
def catcher(tmp_path):
    catcher = MailCatcher(tmp_path / "mail", port=_free_port(), keep=5).start()
    yield catcher
    catcher.stop()


# --- the catcher -----------------------------------------------------------------------------------


def test_catcher_writes_each_message_received_over_smtp(catcher):
    html = '<p style="color:#333">Hi <a href="http://127.0.0.1:5000/verify/abc">verify</a></p>'
    _send(
        catcher.port,
        _mail("ann@example.com", "Verify your address ✓", "verify_email", "Hi http://127.0.0.1:5000/verify/abc", html),
        to_addrs=["ann@example.com", "hidden@example.com"],
    )
    files = sorted(catcher.directory.iterdir())
    assert [f.name for f in files if NAME_RE.match(f.name)] == [f.name for f in files]  # no temp file left
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    mail = read_message(catcher.directory, files[0].name)
    assert mail is not None
    assert (mail.to, mail.subject, mail.kind) == ("ann@example.com", "Verify your address ✓", "verify_email")
    assert (mail.part("plain") or "").strip() == "Hi http://127.0.0.1:5000/verify/abc"
    assert (mail.part("html") or "").strip() == html
    # the envelope is kept: a Bcc'd address shows in the catcher's header
    assert mail.message["X-Catcher-Envelope-To"] == "ann@example.com, hidden@example.com"


def test_catcher_keeps_only_the_newest_messages(catcher):
    for n in range(8):
        _send(catcher.port, _mail(f"u{n}@example.com", f"Mail {n}", "receipt", f"body {n}"))
    mails = list_messages(catcher.directory)
    assert [m.subject for m in mails] == ["Mail 7", "Mail 6", "Mail 5", "Mail 4", "Mail 3"]  # newest first


def test_write_and_prune_leave_other_files_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    names = [write_message(tmp_path, f"Subject: {n}\r\n\r\nbody\r\n".encode()).name for n in range(3)]
    assert names == sorted(names)
    assert prune(tmp_path, 1) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[-1], "notes.txt"])


def test_read_message_refuses_names_it_did_not_write(tmp_path):
    (tmp_path / "secret_key").write_text("x")
    assert read_message(tmp_path, "secret_key") is None
    assert read_message(tmp_path, "../secret_key") is None
    assert read_message(tmp_path, "20261130T101112.123456Z-1a2b3c4d.eml") is None  # absent
    assert list_messages(tmp_path / "nowhere") == []


def test_flask_mail_catcher_command(tmp_path):
    """``flask mail-catcher`` listens on 127.0.0.1, writes what it receives, stops on SIGTERM."""
    port = _free_port()
    directory = tmp_path / "caught"
    env = {
        **os.environ,
        "FLASK_APP": "storefront",
        "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": GOOD_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "QUEUE_SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
    }
    env.pop("STRIPE_SECRET_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "mail-catcher", "--port", str(port), "--dir", str(directory)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"Mail catcher: smtp://127.0.0.1:{port} -> {directory}"), first
        _send(port, _mail("bob@example.com", "Your receipt", "receipt", "Thanks"))
        assert [m.subject for m in list_messages(directory)] == ["Your receipt"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(OSError):  # closed when the command stopped
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --- /dev/mail ---------------------------------------------------------------------------------------


@pytest.fixture
def caught(app, catcher, monkeypatch):
    """The test app's /dev/mail reads this test's catcher."""
    monkeypatch.setitem(app.config, "MAIL_CATCHER_DIR", str(catcher.directory))
    return catcher


def test_dev_mail_lists_and_shows_caught_mail(client, caught):
    link = "http://127.0.0.1:5000/reset-password/tok?a=1&b=2"
    html = (
        f'<html><head><title>x</title></head><body><p style="color:red">Reset: <a href="{link}">here</a></p>'
        "</body></html>"
    )
    _send(caught.port, _mail("carol@example.com", "Reset your password", "password_reset", f"Open {link}.", html))
    _send(caught.port, _mail("dan@example.com", "Plain note <b>", None, "just text"))

    page = client.get("/dev/mail/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    body = page.get_data(as_text=True)
    assert body.index("Plain note &lt;b&gt;") < body.index("Reset your password")  # newest first, escaped
    assert "carol@example.com" in body and "<code>password_reset</code>" in body
    names = re.findall(r'href="/dev/mail/([^"/]+\.eml)"', body)
    assert len(names) == 2

    shown = client.get(f"/dev/mail/{names[1]}")
    assert shown.status_code == 200
    text = shown.get_data(as_text=True)
    # the text part's link is clickable (escaped once, the trailing full stop left out)
    assert f'<a href="{link.replace("&", "&amp;")}" rel="noopener noreferrer">' in text
    assert "X-Storefront-Kind" in text
    frame = found(re.search(r"<iframe[^>]*>", text), "the HTML part's frame").group(0)
    assert f'src="/dev/mail/{names[1]}/html"' in frame
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"' in frame
    assert "frame-src 'self' " in shown.headers["Content-Security-Policy"]  # this page only

    part = client.get(f"/dev/mail/{names[1]}/html")
    assert part.status_code == 200
    policy = part.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox ") and "script-src" not in policy and "default-src 'none'" in policy
    assert part.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert '<head><base target="_top"><title>' in part.get_data(as_text=True)  # links leave the frame

    assert client.get(f"/dev/mail/{names[0]}/html").status_code == 404  # no HTML part
    plain = client.get(f"/dev/mail/{names[0]}").get_data(as_text=True)
    assert "This message has no HTML part." in plain


def test_dev_mail_shows_a_malformed_message(client, caught):
    """Whatever arrived is shown, never a 500: an unknown charset, undecodable header bytes."""
    raw = (
        b"Subject: =?x-unknown?q?odd?=\r\nTo: \xff\xfe someone\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="zz"\r\n\r\n'
        b"--zz\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nplain \xff http://x.test/a\r\n"
        b"--zz\r\nContent-Type: text/html; charset=bogus\r\n\r\n<b>bold</b>\r\n--zz--\r\n"
    )
    name = write_message(caught.directory, raw).name
    assert client.get("/dev/mail/").status_code == 200
    shown = client.get(f"/dev/mail/{name}")
    assert shown.status_code == 200
    assert '<a href="http://x.test/a"' in shown.get_data(as_text=True)
    assert client.get(f"/dev/mail/{name}/html").get_data(as_text=True) == '<base target="_top"><b>bold</b>'


def test_dev_mail_refuses_unknown_names_and_other_machines(client, caught):
    _send(caught.port, _mail("eve@example.com", "Hello", "receipt", "hi"))
    name = list_messages(caught.directory)[0].name
    assert client.get("/dev/mail/20261130T101112.123456Z-1a2b3c4d.eml").status_code == 404
    assert client.get("/dev/mail/secret_key").status_code == 404
    assert client.get("/dev/mail/..%2Fsecret_key").status_code == 404
    assert client.get(f"/dev/mail/{name}", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 404
    assert client.get("/dev/mail/", headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 404
    assert client.get(f"/dev/mail/{name}").status_code == 200


def test_dev_mail_empty_and_linked_from_the_test_banner(client, caught):
    page = client.get("/dev/mail/").get_data(as_text=True)
    assert "No mail caught yet" in page
    banner = client.get("/test-cards").get_data(as_text=True)
    assert 'href="/dev/mail/">Caught mail</a>' in banner


def test_dev_mail_is_absent_outside_sandbox_mode(tmp_path):
    test_mode = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "INSTANCE_PATH": str(tmp_path),
            "STRIPE_SECRET_KEY": "sk_test_abc",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_abc",
            "SECRET_KEY": GOOD_KEY,
            "MAIL_CATCHER_DIR": str(tmp_path),
        }
    )
    assert test_mode.config["STRIPE_MODE"] == "test"
    live = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "INSTANCE_PATH": str(tmp_path), **LIVE_ENV, **LIVE_MAIL})
    assert live.config["STRIPE_MODE"] == "live"
    write_message(tmp_path, b"Subject: hi\r\n\r\nbody\r\n")
    for app in (test_mode, live):
        with app.app_context():
            from storefront.extensions import db

            db.create_all()
        client = app.test_client()
        assert client.get("/dev/mail/").status_code == 404
        assert client.get("/dev/mail").status_code == 404
        assert "Caught mail" not in client.get("/").get_data(as_text=True)


# --- live mode needs SMTP ----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["MAIL_SERVER", "MAIL_DEFAULT_SENDER", "STORE_URL"])
def test_live_mode_refuses_to_start_without_smtp_settings(tmp_path, missing):
    env = {**LIVE_ENV, **LIVE_MAIL}
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        load_settings(env, str(tmp_path), overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with pytest.raises(ConfigError, match=missing):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "INSTANCE_PATH": str(tmp_path), **env})
    settings = load_settings(
        {**LIVE_ENV, **LIVE_MAIL}, str(tmp_path), overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )
    assert settings["MAIL_SERVER"] == "smtp.example.com"
    assert settings["MAIL_DEFAULT_SENDER"] == "Shop <shop@shop.example>"


def test_live_mode_mail_links_need_the_https_address(tmp_path):
    env = {**LIVE_ENV, **LIVE_MAIL, "STORE_URL": "http://shop.example"}
    with pytest.raises(ConfigError, match="STORE_URL"):
        load_settings(env, str(tmp_path), overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    del env["STORE_URL"]
    settings = load_settings({**env, "EXTERNAL_URL": "https://shop.example"}, str(tmp_path))
    assert settings["STORE_URL"] == "https://shop.example"


def test_sandbox_mode_sends_to_the_catcher_by_default(tmp_path):
    settings = load_settings({}, str(tmp_path), overrides={"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert (settings["MAIL_SERVER"], settings["MAIL_PORT"]) == ("127.0.0.1", 8025)
    assert load_settings({"MAIL_CATCHER_DIR": str(tmp_path / "m")}, str(tmp_path))["MAIL_CATCHER_DIR"] == str(
        tmp_path / "m"
    )


def test_caught_mail_is_listed_in_time_order(tmp_path):
    for n in range(3):
        write_message(tmp_path, f"Subject: {n}\r\n\r\nbody\r\n".encode())
        time.sleep(0.001)
    assert [m.subject for m in list_messages(tmp_path)] == ["2", "1", "0"]
