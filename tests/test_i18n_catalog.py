"""The catalog template is up to date: every string marked for translation in templates/ and
storefront/ is in the committed ``translations/messages.pot``.

This is the basis of CI's "a template string missing from a catalog fails": run Babel's own
extractor with the project's ``babel.cfg`` (as ``pybabel extract`` does, README "Languages")
and compare its msgids with the committed template's. When this fails, re-run the extract
command; the per-language catalogs then follow with ``pybabel update``.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from flask import Flask

from storefront.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
POT = ROOT / "translations" / "messages.pot"
SOURCES = ("storefront", "templates")  # pybabel extract ... storefront templates
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "_l": None}  # -k lazy_gettext -k _l

MsgId = str | tuple[str, ...]


def extracted_msgids() -> set[MsgId]:
    with (ROOT / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: set[MsgId] = set()
    for source in SOURCES:
        for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT / source), method_map, options_map, keywords=KEYWORDS
        ):
            msgid = message if isinstance(message, str) else tuple(message[:2])
            found.add((context, msgid) if context else msgid)  # type: ignore[arg-type]
    return found


def committed_msgids() -> set[MsgId]:
    with POT.open("rb") as pot:
        catalog = read_po(pot)
    ids: set[MsgId] = set()
    for message in catalog:
        if not message.id:
            continue  # the header
        msgid = message.id if isinstance(message.id, str) else tuple(message.id)
        ids.add((message.context, msgid) if message.context else msgid)  # type: ignore[arg-type]
    return ids


def test_extraction_finds_the_marked_strings() -> None:
    found = extracted_msgids()
    assert "Log in" in found  # templates/base.html
    assert "Please log in to continue." in found  # storefront/__init__.py (Flask-Login's message)


def test_committed_catalog_template_holds_every_marked_string() -> None:
    missing = extracted_msgids() - committed_msgids()
    assert not missing, (
        f"{len(missing)} marked string(s) missing from translations/messages.pot, e.g. "
        f"{sorted(map(str, missing))[:5]}; run: pybabel extract -F babel.cfg -k lazy_gettext -k _l "
        "--project Storefront -o translations/messages.pot storefront templates"
    )


def test_store_speaks_english_only_until_the_catalogs_are_complete(app: Flask) -> None:
    assert LANGUAGES == ["en"] and app.config["LANGUAGES"] == ["en"]
    with app.test_request_context("/", headers={"Accept-Language": "de-DE,de;q=0.9"}):
        from flask_babel import get_locale, gettext

        assert str(get_locale()) == "en"
        assert gettext("Log in") == "Log in"
