"""The API's contract (``storefront/openapi.json``): it names exactly the app's ``/api`` routes, it
is served at ``/api/openapi.json`` and as a page at ``/api/docs``, and the real app answers as it
says -- schemathesis generates requests from the document and sends them over HTTP to the live
store (the sandbox behind it): no 5xx, every status, header and body as documented."""

from __future__ import annotations

import json
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.result import Ok
from sqlalchemy import func, select

from storefront.extensions import db, limiter
from storefront.models import Order
from storefront.web.api import API_STATUS
from storefront.web.api_docs import DOCUMENT_PATH, METHODS, load_document

DOCUMENT = load_document()
#: generated requests per operation (and workflows): a few seconds in the suite, the same ones on
#: every run (derandomized); CONTRACT_MAX_EXAMPLES=500 explores further by hand
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "25"))
SEED_STATUSES = {"paid", "unpaid", "processing", "expired", "failed", "canceled", "no_payment_required"}
SEED_ERROR_CODES = (
    "invalid_price_id",
    "price_not_found",
    "currency_not_supported",
    "amount_too_small",
    "amount_too_large",
    "rate_limit_exceeded",
)
#: a Flask URL rule's ``<converter:name>`` and an OpenAPI path's ``{name}``, both as ``{}``
_FLASK_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_OPENAPI_ARG = re.compile(r"\{([^{}]+)\}")


def _app_api_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == "/api" or rule.rule.startswith("/api/"):
            for method in rule.methods or ():
                if method.lower() in METHODS:
                    routes.add((_FLASK_ARG.sub("{}", rule.rule), method.lower()))
    return routes


def _document_routes() -> set[tuple[str, str]]:
    return {
        (_OPENAPI_ARG.sub("{}", path), method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


# --- the document -------------------------------------------------------------------------------


def test_the_document_names_exactly_the_apps_api_routes(app):
    in_app, documented = _app_api_routes(app), _document_routes()
    assert in_app - documented == set(), "routes missing from storefront/openapi.json"
    assert documented - in_app == set(), "documented routes the app does not have"


def test_every_path_parameter_is_described(app):
    for path, item in DOCUMENT["paths"].items():
        for method in (m for m in item if m in METHODS):
            described = {p["name"] for p in item[method].get("parameters", []) if p["in"] == "path"}
            assert described == set(_OPENAPI_ARG.findall(path)), f"{method.upper()} {path}"


def test_it_is_a_valid_openapi_3_1_document():
    assert DOCUMENT["openapi"].startswith("3.1")
    results = list(schemathesis.openapi.from_dict(DOCUMENT).get_all_operations())
    assert [r for r in results if not isinstance(r, Ok)] == []  # every operation reads
    labels = {r.ok().label for r in results if isinstance(r, Ok)}
    assert len(labels) == len(_document_routes())


def test_statuses_are_the_seeds_seven_and_the_api_answers_no_other():
    enum = set(DOCUMENT["components"]["schemas"]["Status"]["enum"])
    assert enum == SEED_STATUSES
    assert set(API_STATUS.values()) <= SEED_STATUSES


def test_the_seeds_error_codes_are_documented():
    text = json.dumps(DOCUMENT)
    for code in SEED_ERROR_CODES:
        assert code in text, code
    rate_limited = DOCUMENT["components"]["responses"]["RateLimited"]
    assert rate_limited["headers"]["Retry-After"]["required"] is True


def test_openapi_json_is_served_cacheable(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    assert "public" in response.headers["Cache-Control"]
    again = client.get("/api/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_docs_page_shows_every_operation_without_scripts(client):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for path, method in ((p, m) for p, item in DOCUMENT["paths"].items() for m in item if m in METHODS):
        assert f"<code>{method.upper()} {path}</code>" in html
    for status in SEED_STATUSES | set(SEED_ERROR_CODES):
        assert status in html, status
    assert "<script" not in html  # the CSP allows no inline script, and the page needs none
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


# --- the app answers as documented (schemathesis) ---------------------------------------------

schema = schemathesis.openapi.from_dict(DOCUMENT)
# the store refuses a NUL character anywhere in a request (400 bad_request, web/security.py), as
# the document says; schemathesis would otherwise put one in "valid" text and call the 400 wrong
schema.config.generation.update(allow_x00=False)


@pytest.mark.usefixtures("catalog")
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_documented(case, app, live_server):
    with app.app_context():
        limiter.reset()  # each case starts under the limit: this test is about the answers' shapes
    excluded = []
    if case.operation.path == "/api/stripe/webhook":
        # a delivery is valid only with Stripe's signature over its bytes, which no generator can
        # make: every generated one is refused (400), as documented
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.call_and_validate(base_url=live_server.url, timeout=10, excluded_checks=excluded)


@pytest.mark.usefixtures("catalog")
def test_the_documented_links_work_as_a_workflow(app, live_server):
    """Stateful: schemathesis follows the document's links with real answers -- a price from
    ``GET /api/prices`` bought through create-checkout-session, whose ``sessionId`` is polled at
    check-payment-status -- so the successful answers are checked too, not only the refusals."""
    base_url = live_server.url

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self):
            with app.app_context():
                limiter.reset()

        def get_call_kwargs(self, case):
            return {"base_url": base_url, "timeout": 10}

        def validate_response(self, response, case, **kwargs):
            if case.operation.path == "/api/stripe/webhook":
                kwargs["excluded_checks"] = [schemathesis.checks.positive_data_acceptance]
            super().validate_response(response, case, **kwargs)

    Workflow.run(
        settings=settings(
            max_examples=max(MAX_EXAMPLES // 2, 1),
            stateful_step_count=4,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    with app.app_context():  # the links were followed: guests' Checkout Sessions were made
        assert (db.session.scalar(select(func.count(Order.id)).where(Order.user_id.is_(None))) or 0) > 0
        db.session.remove()


def test_the_429_is_as_documented(app, live_server, sandbox):
    """Over the limit: 429 ``rate_limit_exceeded`` with ``Retry-After``, as the document says."""
    import requests

    with app.app_context():
        limiter.reset()
    url = f"{live_server.url}/api/check-payment-status/cs_test_nope"
    with requests.Session() as http:
        statuses = [http.get(url, timeout=10).status_code for _ in range(100)]
        response = http.get(url, timeout=10)
    assert statuses == [404] * 100 and response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    case = schema["/api/check-payment-status/{sessionId}"]["GET"].Case(path_parameters={"sessionId": "cs_test_nope"})
    case.validate_response(response)
