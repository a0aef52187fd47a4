"""``GET /v1/prices/search``: Stripe's search query language, the subset a catalog needs --
``field:'value'`` clauses joined by ``AND`` on ``lookup_key``, ``active``, ``currency``,
``product`` and ``type``. Stripe's other fields and operators (``OR``, ``-``, ``~``, ``>``,
``metadata[...]``) are refused as not supported rather than answered wrongly."""

from __future__ import annotations

import re

from .. import errors
from ..api import Context, endpoint

_FIELDS = ("lookup_key", "active", "currency", "product", "type")
_STRIPE_FIELDS = ("created", "metadata")
_CLAUSE = re.compile(r"""^(?P<field>[a-z_]+):(?P<quote>['"])(?P<value>[^'"]*)(?P=quote)$""")


def _clauses(query: str) -> list[tuple[str, str]]:
    clauses = []
    for text in query.strip().split(" AND "):
        match = _CLAUSE.match(text.strip())
        if match is None:
            raise errors.invalid_request(
                f"The search query `{text.strip()}` is not supported by the sandbox: use field:'value' "
                "clauses joined by AND.",
                param="query",
                code="parameter_unsupported",
            )
        field = match["field"]
        if field not in _FIELDS:
            raise errors.invalid_request(
                f"Field `{field}` is an unsupported search field for resource `prices`. See "
                "http://stripe.com/docs/search#query-fields-for-prices for a list of supported fields."
                if field not in _STRIPE_FIELDS
                else f"The search field `{field}` is not supported by the sandbox.",
                param="query",
            )
        clauses.append((field, match["value"]))
    return clauses


def _matches(price: dict, clauses: list[tuple[str, str]]) -> bool:
    for field, value in clauses:
        actual = price.get(field)
        if field == "active":
            if str(actual).lower() != value.lower():
                return False
        elif actual != value:
            return False
    return True


@endpoint("GET", "/v1/prices/search", params="PriceSearchParams", supported=["query", "limit", "page"])
def search_prices(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    clauses = _clauses(params["query"])
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise errors.invalid_request(
            "Invalid limit: must be between 1 and 100", param="limit", code="parameter_invalid_integer"
        )
    found = [p for p in ctx.store.all("price") if not p.get("deleted") and _matches(p, clauses)]
    page = params.get("page")
    start = 0
    if page:
        if not re.fullmatch(r"page_\d+", page):
            raise errors.invalid_request("Invalid page token.", param="page")
        start = int(page.removeprefix("page_"))
    has_more = start + limit < len(found)
    return {
        "object": "search_result",
        "data": found[start : start + limit],
        "has_more": has_more,
        "next_page": f"page_{start + limit}" if has_more else None,
        "url": "/v1/prices/search",
    }
