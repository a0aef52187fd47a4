"""``/dev/mail``: the mail the sandbox caught (development only).

Registered only in sandbox mode (``create_app`` skips it in test and live mode, so there the URLs
are a plain 404). It reads the directory ``flask mail-catcher`` writes (``MAIL_CATCHER_DIR``,
default ``instance/mail``) and shows each message: its headers, the plain-text part (links made
clickable) and the HTML part in a sandboxed ``<iframe>``.

Who may look: any visitor on this machine -- a request straight from a loopback address (no
``Forwarded`` / ``X-Forwarded-For``: a proxy on the same host would make every visitor local), so
a newcomer can click the reset link of any sandbox account without logging in as an admin. The
page shows password-reset links for every account, which is why it exists only in sandbox mode
and answers 404 to anyone not on the machine.

The HTML part is served on its own URL with its own policy: ``Content-Security-Policy: sandbox``
(no script, an opaque origin), inline styles allowed (mail HTML is styled inline), nothing loaded
from elsewhere, framable by this site only. Its links open in the top window (``<base
target="_top">``), so clicking a verification link in the frame leaves the dev page.
"""

from __future__ import annotations

import ipaddress
import re

from flask import Blueprint, Flask, Response, abort, current_app, render_template, request
from markupsafe import Markup, escape

from ..extensions import limiter
from ..mail_catcher import CaughtMail, dev_mail_dir, list_messages, read_message
from .security import content_security_policy

bp = Blueprint("dev_mail", __name__, url_prefix="/dev/mail")
limiter.exempt(bp)

LIST_LIMIT = 200
#: the iframe's (and the HTML part's own) sandbox: no script, no same-origin; a link may open a
#: new tab or, when clicked, navigate the top window
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
HTML_PART_CSP = (
    f"sandbox {FRAME_SANDBOX}; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; form-action 'none'; frame-ancestors 'self'"
)
_URL_RE = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)]}"
_HEAD_RE = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)
_DOCTYPE_RE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)


def _directory() -> str:
    return str(dev_mail_dir(current_app.config, current_app.instance_path))


@bp.before_request
def only_from_this_machine() -> None:
    if request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For"):
        abort(404)
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        abort(404)
    if not address.is_loopback:
        abort(404)


@bp.after_request
def never_cached(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"  # reset links
    return response


def linkify(text: str) -> Markup:
    """Plain text, escaped, with each http(s) URL made a link (trailing punctuation left out)."""
    parts: list[str] = []
    last = 0
    for match in _URL_RE.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        end = match.start() + len(url)
        parts.append(str(escape(text[last : match.start()])))
        parts.append(f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a>')
        last = end
    parts.append(str(escape(text[last:])))
    return Markup("".join(parts))  # noqa: S704 - every piece above is escaped


def with_top_target(html: str) -> str:
    """The HTML with ``<base target="_top">`` at the start of its head (links leave the frame)."""
    base = '<base target="_top">'
    for pattern in (_HEAD_RE, _DOCTYPE_RE):
        match = pattern.search(html)
        if match:
            return html[: match.end()] + base + html[match.end() :]
    return base + html


def _message_or_404(name: str) -> CaughtMail:
    mail = read_message(_directory(), name)
    if mail is None:
        abort(404)
    return mail


@bp.get("/")
def index() -> str:
    return render_template("dev/mail_list.html", mails=list_messages(_directory(), LIST_LIMIT), directory=_directory())


@bp.get("/<name>")
def show(name: str) -> Response:
    mail = _message_or_404(name)
    text = mail.part("plain")
    body = render_template(
        "dev/mail_show.html",
        mail=mail,
        text=linkify(text) if text is not None else None,
        has_html=mail.part("html") is not None,
        frame_sandbox=FRAME_SANDBOX,
    )
    response = Response(body, mimetype="text/html")
    # this page (only) frames one page of this site: the HTML part below
    policy = content_security_policy(current_app.config).replace("frame-src ", "frame-src 'self' ", 1)
    response.headers["Content-Security-Policy"] = policy
    return response


@bp.get("/<name>/html")
def html_part(name: str) -> Response:
    html = _message_or_404(name).part("html")
    if html is None:
        abort(404)
    response = Response(with_top_target(html), mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_PART_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.app_context_processor
def dev_mail_link() -> dict[str, bool]:
    return {"dev_mail_enabled": True}


def init_app(app: Flask) -> None:
    """Serve /dev/mail -- in sandbox mode only (never in test or live mode)."""
    if app.config.get("STRIPE_MODE") != "sandbox":
        return
    app.register_blueprint(bp)
