"""Headless Chromium clicks the links in the store's own mail, as a newcomer does in the sandbox:
the mail goes over real SMTP to the sandbox's mail catcher (storefront/mail_catcher.py), is opened
from the test-mode banner's "Caught mail" page (/dev/mail), and its link is clicked there.

* sign up -> the verification mail -> its button in the HTML part (a sandboxed frame) -> the
  address is confirmed on the account page;
* forgot password -> the reset mail -> its link in the plain-text part -> a new password -> signed
  in; the same link a second time is refused (single use).

The store runs with CSRF on, as in production. The queue's worker (the session app, in this
process) renders and sends the mail: it is pointed at this test's catcher and at this store's URL.
"""

from __future__ import annotations

import re
import socket
import threading

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from storefront import create_app
from storefront.mail_catcher import MailCatcher
from tests.conftest import TEST_PASSWORD, make_config

NEW_PASSWORD = "a-brand-new-passphrase-9"
MAIL_TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def mail_store(app, database_url, sandbox_server, sandbox, tmp_path, monkeypatch):
    """The store over HTTP with CSRF on, its mail caught into ``tmp_path/mail``; yields its URL."""
    catcher = MailCatcher(tmp_path / "mail", port=_free_port()).start()
    mail = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": catcher.port, "MAIL_CATCHER_DIR": str(catcher.directory)}
    # queue into the file the session app's worker consumes
    queue = app.config["QUEUE_SQLITE_PATH"]
    shop = create_app(
        make_config(database_url, sandbox_server.url, WTF_CSRF_ENABLED=True, QUEUE_SQLITE_PATH=queue, **mail)
    )
    with shop.app_context():
        from storefront.services.catalog import sync_catalog

        sync_catalog()
    server = make_server("127.0.0.1", 0, shop, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    shop.config["STORE_URL"] = url
    for name, value in {**mail, "STORE_URL": url}.items():  # the worker's app sends the mail
        monkeypatch.setitem(app.config, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    thread.join(5)
    catcher.stop()


def open_caught_mail(page: Page, store: str, to: str, kind: str) -> None:
    """From any store page: the banner's "Caught mail", then the newest mail of ``kind`` to ``to``
    (the page is reloaded until the queue has sent it)."""
    page.get_by_role("link", name="Caught mail").click()
    page.wait_for_url(store + "/dev/mail/")
    row = page.locator("tr[data-mail]", has_text=to).filter(has=page.locator("code", has_text=re.compile(f"^{kind}$")))
    for _ in range(MAIL_TIMEOUT_MS // 500):
        if row.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(row.first).to_be_visible()
    row.first.get_by_role("link").click()
    expect(page.locator("table.dev-mail-headers")).to_contain_text(kind)


def sign_up(page: Page, store: str, email: str, name: str) -> None:
    page.goto(store + "/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Confirm password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(store + "/")


def test_sign_up_then_confirm_the_address_from_the_caught_mail(mail_store, page):
    store = mail_store
    sign_up(page, store, "newcomer@example.com", "Nina Newcomer")
    page.goto(store + "/account/")
    expect(page.locator("[data-email-unverified]")).to_be_visible()

    open_caught_mail(page, store, "newcomer@example.com", "verify_email")
    expect(page.locator("[data-part=text]")).to_contain_text(store + "/verify-email/")
    # the HTML part, in its sandboxed frame: its button leaves the frame for the store
    button = page.frame_locator("iframe[data-part=html]").get_by_role("link", name="Confirm my email address")
    button.click()
    page.wait_for_url(store + "/account/")
    expect(page.locator(".flashes")).to_contain_text("your email address is confirmed")
    expect(page.locator("[data-email-verified]")).to_be_visible()


def test_forgot_password_then_reset_it_from_the_caught_mail(mail_store, page):
    store = mail_store
    sign_up(page, store, "forgetful@example.com", "Fred Forgetful")
    page.get_by_role("button", name="Log out").click()

    page.goto(store + "/login")
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Email").fill("forgetful@example.com")
    page.get_by_role("button", name="Send me a reset link").click()
    page.wait_for_url(store + "/login")
    expect(page.locator(".flashes")).to_contain_text("forgetful@example.com")

    open_caught_mail(page, store, "forgetful@example.com", "password_reset")
    link = page.locator("[data-part=text] a", has_text=store + "/reset-password/")
    reset_url = link.get_attribute("href")
    link.click()  # the plain-text part's link
    page.wait_for_url(reset_url)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url(store + "/account/")
    expect(page.locator(".flashes")).to_contain_text("Your password has been changed")
    expect(page.locator(".user-chip")).to_contain_text("Fred Forgetful")  # signed in

    page.goto(reset_url)  # single use
    expect(page.get_by_role("button", name="Set the new password")).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    page.goto(store + "/login")
    page.get_by_label("Email").fill("forgetful@example.com")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".user-chip")).to_contain_text("Fred Forgetful")
