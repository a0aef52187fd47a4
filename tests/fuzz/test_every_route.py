"""Every route of ``app.url_map``, every method it allows, as anonymous, a buyer and an admin,
with hostile query strings, form fields, JSON bodies and path parameters (real ids of the
seeded store for many draws: the buyer's own orders, another buyer's, the admin's id).

Two rules, no exceptions per route:
* no answer is a 5xx, except 503 while Stripe is down (some draws make every Stripe call of
  the request fail with a 500 or a 429, through the sandbox's fault injection);
* an answer in the 4xx range changes nothing: the database (row counts + a hash of every
  table) and the sandbox's objects are the same before and after it;
* an error under /api/ is the API's JSON error (``{"error": {"code", "message", "type"}}``).

Routes are read from the app when the tests are collected, so a new route is fuzzed without
touching this file. A route is skipped only for a stated technical reason: see ``SKIPPED``.
There is no list of accepted failures.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import traceback
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from storefront import create_app

from ..conftest import make_config
from .harness import FUZZ_SEED, STATS, Failure, World, describe_change, establish, innermost_app_frame, still_signed_in
from .strategies import (
    ACCEPT,
    COOKIE,
    HOST,
    PLAUSIBLE,
    RAW_QUERY_TAILS,
    REFERER,
    SWEEP,
    NamePool,
    deep_json,
    fill_path,
    harvest_forms,
    is_number,
    json_strategy,
    pairs_strategy,
    path_value,
    query_string,
    signature,
    view_names,
    webhook_request,
)

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    # a false alarm about json_strategy's st.recursive (it does use its argument)
    pytest.mark.filterwarnings("ignore:.*doesn't use it's argument"),
]

#: endpoint -> why it is not fuzzed
SKIPPED = {
    "static": "Flask's own send_from_directory over static/: files, no parameters, no database",
}
IDENTITIES = ("anonymous", "buyer", "admin")
#: random examples per (route, method, identity), plus the ``SWEEP`` requests
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
TRACE = bool(os.environ.get("FUZZ_TRACE"))  # print every request and its status


@pytest.fixture(autouse=True)
def _isolate():
    """Overrides tests/conftest.py's per-test cleanup: this module's tests share one seeded
    store (the ``world`` fixture empties the tables once, at the end)."""
    yield


def _combos() -> list:
    app = create_app(make_config("sqlite://", "http://127.0.0.1:9"))
    combos = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in SKIPPED:
            continue
        # HEAD and OPTIONS are drawn inside the GET/POST runs (Flask answers them for every rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for identity in IDENTITIES:
                combos.append(
                    pytest.param(rule.endpoint, rule.rule, method, identity, id=f"{method} {rule.rule} as {identity}")
                )
    return combos


COMBOS = _combos()


def test_every_rule_is_fuzzed_or_skipped_for_a_reason(app):
    fuzzed = {(p.values[0], p.values[1]) for p in COMBOS}
    for rule in app.url_map.iter_rules():
        assert (rule.endpoint, rule.rule) in fuzzed or rule.endpoint in SKIPPED, rule
    assert all(reason.strip() for reason in SKIPPED.values())


def _signed(view) -> bool:
    """Routes authenticated by a Stripe signature rather than a session (the webhook)."""
    module = inspect.getmodule(view)
    try:
        source = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        return False
    return "Stripe-Signature" in source


RAW_BODIES = [
    b"\xff\xfe\x00\x00",
    b"",
    b"\x00" * 64,
    json.dumps({"a": "b"}).encode("utf-16"),
    b'{"priceId": "price_\xff"}',
    b"a=%ff&b=\x00",
    b"--x\r\nContent-Disposition: form-data\r\n\r\n",
    b"{" * 10,
    b"[1, 2",
    b"A" * 2_000_000,
]
RAW_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/json; charset=utf-16",
    "\x00",
]


@dataclass
class Draw:
    """One request, as drawn (the identity's cookie is added when it is sent)."""

    method: str
    path: str
    query: str
    csrf: str
    headers: dict
    body: bytes | str | None = None
    content_type: str | None = None
    described: str = ""
    outage: str | None = None  # a sandbox fault for this request: Stripe answers 500 or 429


class RequestStrategies:
    """The strategies for one (route, method, identity), built once per test."""

    def __init__(self, world: World, rule, method: str, identity: str, names: NamePool, signed: bool) -> None:
        self.world, self.rule, self.method, self.identity = world, rule, method, identity
        self.signed = signed
        self.pairs = pairs_strategy(world, names)
        self.form_pairs = pairs_strategy(world, names, max_size=8)
        self.json = json_strategy(world, names)
        self.paths = {arg: path_value(world, arg, rule._converters[arg]) for arg in sorted(rule.arguments)}
        self.webhook = webhook_request(world, names) if signed else None
        self.tail = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(RAW_QUERY_TAILS))

    def token(self, draw, csrf: str) -> str | None:
        identity = self.world.identities[self.identity]
        if csrf == "real":
            return identity.token
        if csrf == "other":
            return next(i.token for i in self.world.identities.values() if i is not identity)
        if csrf == "bad":
            return draw(st.sampled_from(["x", "", identity.token[:-2] + "zz", "\x00", "A" * 5000]))
        return None

    def body(self, draw, token: str | None):
        """(body, content type, extra headers, description)."""
        if self.signed:
            body, signature, described = draw(self.webhook)
            headers = {"Stripe-Signature": signature} if signature is not None else {}
            return body, "application/json", headers, described
        kind = draw(st.sampled_from(["form"] * 5 + ["json"] * 3 + ["raw", "deep"]))
        headers = {"X-CSRFToken": token} if token is not None and draw(st.booleans()) else {}
        if kind == "form":
            pairs = draw(self.form_pairs)
            if token is not None:
                pairs.insert(draw(st.integers(0, len(pairs))), ("csrf_token", token))
            return (urlencode(pairs, quote_via=quote), "application/x-www-form-urlencoded", headers, f"form={pairs!r}")
        if token is not None:
            headers = {"X-CSRFToken": token}
        if kind == "json":
            body = json.dumps(draw(self.json))
            return body, "application/json", headers, f"json={body[:800]}"
        if kind == "deep":
            depth = draw(st.sampled_from([100, 1000, 3000, 20000]))
            shape = draw(st.sampled_from(["list", "dict"]))
            return deep_json(depth, shape), "application/json", headers, f"json=<{shape} nested {depth} deep>"
        raw, content_type = draw(st.sampled_from(RAW_BODIES)), draw(st.sampled_from(RAW_TYPES))
        return raw, content_type, headers, f"raw={raw[:200]!r} ({len(raw)} bytes) as {content_type!r}"

    def strategy(self) -> st.SearchStrategy[Draw]:
        @st.composite
        def requests(draw) -> Draw:
            method = self.method
            # (not 0: Hypothesis draws small values first, and most requests should be the real method)
            if method == "GET" and draw(st.integers(0, 7)) == 7:
                method = "HEAD"
            other = draw(st.integers(0, 24))
            if other == 24:
                method = "OPTIONS"
            elif other == 23:  # a method the rule does not allow: 405, in the site's look
                method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "GET", "POST"]))
            path = fill_path(self.rule, {arg: draw(s) for arg, s in self.paths.items()})
            query = query_string(draw(self.pairs), draw(self.tail))
            csrf = draw(st.sampled_from(["real", "real", "real", "bad", "none", "other"]))
            token = self.token(draw, csrf)
            headers = {}
            accept, referer = draw(st.sampled_from(ACCEPT)), draw(st.sampled_from(REFERER))
            if accept is not None:
                headers["Accept"] = accept
            if referer is not None:
                headers["Referer"] = referer
            host, cookie = draw(st.sampled_from(HOST)), draw(st.sampled_from(COOKIE))
            if host is not None:
                headers["Host"] = host
            if cookie is not None:
                headers["Cookie"] = cookie
            request = Draw(
                method, path, query, csrf, headers, outage=draw(st.sampled_from([None] * 10 + ["error", "rate_limit"]))
            )
            if method not in READ_METHODS:
                request.body, request.content_type, extra, request.described = self.body(draw, token)
                headers.update(extra)
            return request

        return requests()


def _json_error(data: bytes) -> bool:
    """The API's error shape: ``{"error": {"code", "message", "type"}}``, all non-empty strings."""
    try:
        error = json.loads(data)["error"]
        return all(isinstance(error.get(k), str) and error[k] for k in ("code", "message", "type"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _send(world: World, rule, method: str, identity_name: str, request: Draw) -> int:
    """Send one request, check the two rules, record failures. Returns the status (a redirect
    to the log-in page counts as 401)."""
    identity = world.identities[identity_name]
    actual, path, qs, csrf = request.method, request.path, request.query, request.csrf
    headers = {**identity.headers(), **request.headers}  # a drawn (tampered) Cookie wins
    body, content_type, described = request.body, request.content_type, request.described
    shown = {k: v for k, v in headers.items() if k != "Cookie" or "Cookie" in request.headers}
    request_text = (f"{actual} {path}?{qs[:1500]}\nas {identity_name}, csrf={csrf}, headers={shown!r}\n{described}")[
        :4000
    ]
    world.capture.records.clear()
    status, detail, kind, to_login = 0, "", None, False
    if request.outage:
        world.sandbox.fault(request.outage, count=50)
        request_text += f"\nwith Stripe down: every call answers {request.outage}"
    started = time.perf_counter()
    try:
        response = world.client.open(
            path, method=actual, query_string=qs, headers=headers, data=body, content_type=content_type
        )
        status = response.status_code
        to_login = response.location is not None and response.location.split("?")[0].endswith("/login")
        try:
            data = response.get_data()  # a streamed answer (the CSV) runs its generator here
            if status == 200 and response.mimetype == "text/html":
                harvest_forms(data.decode("utf-8", "replace"))
            if (
                400 <= status < 500
                and path.startswith("/api/")
                and actual != "HEAD"
                and "Host" not in headers
                and not _json_error(data)
            ):  # (an untrusted Host gets a plain 400, before any route)
                kind, detail = (
                    "not a JSON error",
                    f'an /api/ answer must be {{"error": {{code, message, '
                    f"type}}}}; it was {response.mimetype}: {data[:300]!r}",
                )
        except Exception:  # noqa: BLE001 - the body failed after the status line was sent
            kind, detail = "stream error", traceback.format_exc()
        finally:
            response.close()
    except Exception:  # noqa: BLE001 - the app raised past its own error handlers
        status, kind, detail = 500, "server error", traceback.format_exc()
    finally:
        if request.outage:
            world.sandbox.clear_faults()
    STATS.requests += 1
    if TRACE:
        print(f"fuzz: {status} {actual} {path}?{qs[:300]} as {identity_name}", file=sys.stderr)
    STATS.timing["requests"] += time.perf_counter() - started
    STATS.routes.add(rule.rule)
    STATS.statuses[status] += 1
    STATS.by_route[f"{method} {rule.rule} as {identity_name}"][status] += 1
    if status >= 500 and kind is None and not (status == 503 and request.outage):
        kind = "server error"  # 503 is the one honest answer while Stripe is down
    if kind is not None:
        STATS.server_errors += kind != "not a JSON error"
        detail = detail or "\n".join(world.capture.records) or "(no traceback logged)"
        frame = innermost_app_frame(detail)
        exc_line = next(
            (line for line in reversed(detail.strip().splitlines()) if line and not line.startswith(" ")), ""
        )
        STATS.record(
            Failure(
                (rule.endpoint, method, identity_name, kind, status, frame, exc_line[:80]),
                kind,
                rule.endpoint,
                actual,
                identity_name,
                status,
                request_text,
                detail,
            )
        )

    before, before_rows = world.last_fp, world.db_fp.rows
    assert before is not None and before_rows is not None
    started = time.perf_counter()
    after = world.fingerprint()
    STATS.timing["fingerprints"] += time.perf_counter() - started
    world.last_fp = after
    if 400 <= status < 500 and after != before:
        STATS.state_changes += 1
        changed = describe_change(before_rows, world.db_fp.rows or {}) if after[0] != before[0] else []
        if after[1] != before[1]:
            changed.append(f"sandbox: {after[1][0] - before[1][0]} objects more, or one changed")
        tables = tuple(line.split(":", 1)[0] for line in changed)
        STATS.record(
            Failure(
                (rule.endpoint, method, identity_name, "state", status, tables),
                "state change on 4xx",
                rule.endpoint,
                actual,
                identity_name,
                status,
                request_text,
                "changed:\n" + "\n".join(changed),
            )
        )
    elif actual in READ_METHODS and after != before:
        # not a failure by these rules (a page may sync an order from Stripe), but worth a look
        changed = describe_change(before_rows, world.db_fp.rows or {}) if after[0] != before[0] else []
        if after[1] != before[1]:
            changed.append("sandbox objects")
        STATS.read_changes[f"{actual} {rule.rule} as {identity_name} -> {status}"].update(
            line.split(":", 1)[0] for line in changed
        )

    # a successful POST may have logged this identity out (log-out, password change): sign in again
    if (
        identity.email is not None
        and actual not in READ_METHODS
        and status < 400
        and not still_signed_in(world.app, identity)
    ):
        started = time.perf_counter()
        establish(world.app, identity)
        world.refresh_fingerprint()
        STATS.timing["sign-ins again"] += time.perf_counter() - started
    return 401 if status in (301, 302, 303) and to_login else status


def sweep(
    world: World, rule, method: str, identity_name: str, names: list[str], signed: bool
) -> Generator[Draw, int | None, None]:
    """Requests with each value of ``SWEEP`` in the names the route reads (as learned while the
    random examples ran), in the query string and in the body, with the real CSRF token and
    real ids of the seeded store in the path (a different one each time). Yields requests and
    is sent each answer's status."""
    identity = world.identities[identity_name]
    if not names and not rule.arguments and not signed:
        return  # nothing to vary
    # per string argument: real ids of the kinds this route accepts (an order, a user, a
    # subscription...), found by one plain request per kind; all kinds if none is accepted
    rotations: dict[str, list[str]] = {}
    firsts = {
        arg: groups[0][0]
        for arg in rule.arguments
        if not is_number(rule._converters[arg]) and (groups := world.ids_for(arg))
    }
    for arg in firsts:
        groups = world.ids_for(arg)
        if len(groups) > 1:
            accepted = []
            for ids in groups:
                probe = Draw(method, fill_path(rule, {**firsts, arg: ids[0]}), "", "real", {})
                if method not in READ_METHODS:
                    probe.body = urlencode([("csrf_token", identity.token)])
                    probe.content_type = "application/x-www-form-urlencoded"
                if _send(world, rule, method, identity_name, probe) != 404:
                    accepted.append(ids)
            groups = accepted or groups
        rotations[arg] = [ids[i] for i in range(max(map(len, groups))) for ids in groups if i < len(ids)]
    # each value in every field at once; then, unless every answer was "log in" or "forbidden",
    # each value in one field at a time with the others as the app's own forms fill them
    plan: list[tuple[str, str | None]] = [(value, None) for value in SWEEP]
    if len(names) > 1:
        plan += [(value, name) for name in names for value in SWEEP]
    answers: list[int | None] = []
    for n, (value, target) in enumerate(plan):
        if n == len(SWEEP) and set(answers) <= {401, 403}:
            return
        values = {}
        for arg in sorted(rule.arguments):
            if is_number(rule._converters[arg]):
                values[arg] = (
                    value
                    if value.isascii() and value.isdigit()
                    else str(world.event_ids[n % len(world.event_ids)] if world.event_ids else 1)
                )
            else:
                values[arg] = rotations[arg][n % len(rotations[arg])] if rotations.get(arg) else value
        if target is None:
            pairs = [(name, value) for name in names]
        else:
            pairs = [
                (name, value if name == target else PLAUSIBLE[name][0])
                for name in names
                if name == target or PLAUSIBLE.get(name)
            ]
        request = Draw(method, fill_path(rule, values), query_string(pairs, None), "real", {})
        if method not in READ_METHODS:
            if signed:
                obj = dict(world.stripe_objects[n % len(world.stripe_objects)])
                obj["id"] = value if n % 2 else obj.get("id")
                event = {
                    "id": value if n % 3 == 0 else f"evt_sweep{n}{time.time_ns()}",
                    "object": "event",
                    "type": "payment_intent.succeeded" if obj.get("object") == "payment_intent" else "charge.refunded",
                    "created": value if n % 3 == 1 else int(time.time()),
                    "data": {"object": obj},
                }
                body = json.dumps(event).encode()
                request.body, request.content_type = body, "application/json"
                request.headers["Stripe-Signature"] = signature(body)
                request.described = f"event={body[:600]!r}"
            elif n % 2 and target is None:  # JSON for every other value of the first pass
                request.body = json.dumps(dict(pairs))
                request.content_type = "application/json"
                request.headers["X-CSRFToken"] = identity.token
                request.described = f"json={request.body[:600]}"
            else:
                form = pairs + [("csrf_token", identity.token)]
                request.body = urlencode(form, quote_via=quote)
                request.content_type = "application/x-www-form-urlencoded"
                request.described = f"form={form!r:.600}"
        answers.append((yield request))


@pytest.mark.parametrize("endpoint,rule_text,method,identity", COMBOS)
def test_no_server_error_and_no_change_on_a_4xx(world: World, endpoint, rule_text, method, identity):
    rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint and r.rule == rule_text)
    view = world.app.view_functions[endpoint]
    names = NamePool(endpoint, view_names(view))
    requests = RequestStrategies(world, rule, method, identity, names, _signed(view)).strategy()

    @seed(FUZZ_SEED ^ zlib.crc32(f"{method} {rule_text} {identity}".encode()))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def fuzz(request):
        _send(world, rule, method, identity, request)

    fuzz()
    requests_of_sweep = sweep(world, rule, method, identity, names.current(), _signed(view))
    status: int | None = None
    while True:
        try:
            request = requests_of_sweep.send(status)
        except StopIteration:
            break
        status = _send(world, rule, method, identity, request)
    mine = [
        f for f in STATS.failures.values() if (f.endpoint, f.identity) == (endpoint, identity) and f.key[1] == method
    ]
    assert not mine, "\n\n".join(f"{f.kind} ({f.status}, x{f.count}):\n{f.request}\n{f.detail[-2500:]}" for f in mine)
