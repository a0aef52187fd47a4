"""Languages: Flask-Babel, its message catalogs (``translations/``) and the locale selector.

Groundwork only for now: every string the buyer reads is marked (``_``/``lazy_gettext`` in
Python, ``_()``/``{% trans %}`` in templates) and extracted into ``translations/messages.pot``
(README, "Languages"), but the selector always answers English, so the store's output is
unchanged until the other catalogs are complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_babel
from flask import Flask
from flask_babel import Babel

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "translations"

# The store's languages. ro, de and zh_Hans join when their catalogs
# (translations/<lang>/LC_MESSAGES/messages.po) are complete.
LANGUAGES = ["en"]
DEFAULT_LOCALE = "en"

babel = Babel()


def gettext(message: str, **values: Any) -> str:
    """Flask-Babel's ``gettext``, typed (for the strictly typed services)."""
    return str(flask_babel.gettext(message, **values))


def N_(message: str) -> str:
    """Marks ``message`` for extraction only; it is translated where it is shown (a mail's
    subject, registered at import time, is translated when the mail is rendered)."""
    return message


def select_locale() -> str:
    """The request's language: English for now (the buyer's choice, then Accept-Language,
    come with the other catalogs)."""
    return DEFAULT_LOCALE


def init_app(app: Flask) -> None:
    app.config.setdefault("LANGUAGES", list(LANGUAGES))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
