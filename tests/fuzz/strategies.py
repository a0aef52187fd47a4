"""What the fuzzer sends: hostile scalars, field names read from the app's own code and
templates, real ids from the seeded store, JSON of every shape, Stripe-like webhook events."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
import time
from typing import Any
from urllib.parse import quote, urlencode

from flask import has_request_context, request
from hypothesis import strategies as st
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.routing.converters import NumberConverter

from ..conftest import sign_payload
from .harness import ROOT, WEBHOOK_SECRET, World

# --------------------------------------------------------------------------- hostile values
HOSTILE = [
    # numbers: too big for a 64-bit column, negative, non-ASCII digits, floats Python reads
    "99999999999999999999",
    "9223372036854775808",
    "9223372036854775807",
    "-9223372036854775809",
    "2147483648",
    "-1",
    "0",
    "-0",
    "١٢",
    "１２",
    "٣.٥٠",
    "1e309",
    "-1e309",
    "NaN",
    "nan",
    "inf",
    "Infinity",
    "1_000",
    "1,50",
    "1.000,50",
    "0x10",
    " 1",
    "1 ",
    "+1",
    "1.",
    ".5",
    "00000001",
    "9" * 5000,
    "1" + "0" * 400,
    # dates at the edges, impossible dates, odd cursors
    "9999-12-31",
    "0001-01-01",
    "2026-02-30",
    "2026-13-01",
    "0000-00-00",
    "2026-01-01T25:00",
    "-2026-01-01",
    "20260101T000000.000000~99999999999999999999",
    "20260101T000000.000000~-1",
    "~",
    "abc~1",
    "9999-12-31T23:59:59.999999~1",
    # control and direction characters, markup, injection-shaped text
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202e",
    "\u202egnp.exe",
    "\r\nSet-Cookie: x=1",
    "\t",
    "\x7f",
    "\ufeff",
    "\u200b",
    "<script>alert(1)</script>",
    "\"'><",
    "' OR 1=1 --",
    "%00",
    "%ff",
    "../../etc/passwd",
    "{{7*7}}",
    "${7*7}",
    "null",
    "true",
    "[]",
    "{}",
    "A" * 10000,
    "é" * 3000,
    "😀" * 500,
    # Stripe's test tokens (retrieving one makes Stripe create an object)
    "pm_card_visa",
    "pm_card_chargeDeclined",
    "tok_visa",
    "pi_x_secret_y",
    "cus_x",
    # plausible shop values
    "1",
    "1.00",
    "5.00",
    "400.00",
    "0.01",
    "2",
    "3",
    "10",
    "duplicate",
    "fraudulent",
    "requested_by_customer",
    "checkout",
    "card",
    "pending",
    "paid",
    "refunded",
    "1 per minute",
]
HOSTILE_INTS = [0, 1, 2, 3, 7, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**20, 10**100]
RAW_QUERY_TAILS = [
    "%ff%fe",
    "a=%00",
    "before=%ff",
    "a[]=1&a[]=2",
    "=",
    "&&&",
    "before",
    "before=&before=1",
    ";",
    "%",
    "%zz",
    "q=%E2%80%AE",
    "x=" + "%41" * 3000,
]
ACCEPT = [
    None,
    None,
    "application/json",
    "text/html",
    "*/*",
    "application/json;q=0.9, text/html;q=0.1",
    "text/csv",
    "\x00",
]
REFERER = [None, None, "http://evil.example/", "http://localhost/account/billing", "javascript:alert(1)"]
HOST = [None] * 12 + ["evil.example", "localhost:1", "localhost.evil.example", "[::1]", "a" * 300, "\x00"]
#: a tampered cookie instead of the identity's (None: the identity's own)
COOKIE = [None] * 16 + [
    "session=garbage",
    "session=",
    "session=e30.AAAA.BBBB",
    "remember_token=1|deadbeef",
    "session=" + "A" * 4000,
]

# text without lone surrogates (they cannot be encoded into a request at all)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


# --------------------------------------------------------------------------- field names
_NAME_PATTERNS = [
    re.compile(r"""(?:args|form|values|json|body|payload|params|data)\.get(?:list)?\(\s*["']([\w.-]{1,40})["']"""),
    re.compile(r"""(?:args|form|values|json|body|payload)\[\s*["']([\w.-]{1,40})["']\s*\]"""),
    re.compile(r"""^\s*(\w+)\s*=\s*\w*Field\(""", re.M),
]
_TEMPLATE_NAME = re.compile(r"""name=["']([\w.-]{1,40})["']""")


def names_in(source: str) -> set[str]:
    found: set[str] = set()
    for pattern in _NAME_PATTERNS:
        found.update(pattern.findall(source))
    return found


def _global_names() -> list[str]:
    found: set[str] = set()
    for path in list((ROOT / "storefront" / "web").glob("*.py")) + list(
        (ROOT / "storefront" / "services").glob("*.py")
    ):
        found |= names_in(path.read_text(encoding="utf-8"))
    for path in (ROOT / "templates").rglob("*.html"):
        found.update(_TEMPLATE_NAME.findall(path.read_text(encoding="utf-8")))
    found.discard("csrf_token")
    return sorted(found)


GLOBAL_NAMES = _global_names()
#: endpoint -> the query/form keys the app looked up while answering it (see RecordingMultiDict)
LEARNED: dict[str, set[str]] = {}
#: field name -> values the app's own pages put in their forms (inputs, select options), so the
#: sweep can make one field hostile while the others look like a real submission
PLAUSIBLE: dict[str, list[str]] = {}
_TAG = re.compile(r"<(input|option|select|textarea)\b([^>]*)>", re.I)
_ATTR = re.compile(r"""\b(name|value)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)


def harvest_forms(html: str) -> None:
    """Remember the field values a page offers (hidden tokens, defaults, select options)."""
    import html as html_lib

    select = None
    for tag, attrs in _TAG.findall(html):
        found = {k.lower(): html_lib.unescape(a or b) for k, a, b in _ATTR.findall(attrs)}
        tag = tag.lower()
        if tag == "select":
            select = found.get("name")
            continue
        name = found.get("name") if tag != "option" else select
        if not name or name == "csrf_token" or "value" not in found:
            continue
        values = PLAUSIBLE.setdefault(name, [])
        if found["value"] not in values and len(values) < 20:
            values.append(found["value"])


class RecordingMultiDict(ImmutableMultiDict):
    """``request.args`` / ``request.form`` that note which keys the app asks for."""

    def _note(self, key) -> None:
        if isinstance(key, str) and key != "csrf_token" and has_request_context() and request.endpoint:
            LEARNED.setdefault(request.endpoint, set()).add(key)

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None, type=None):  # type: ignore[override]
        self._note(key)
        return super().get(key, default, type)

    def getlist(self, key, type=None):
        self._note(key)
        return super().getlist(key, type)

    def __contains__(self, key) -> bool:
        self._note(key)
        return super().__contains__(key)


def warm_up(world: World) -> None:
    """Before fuzzing: every GET route once per signed-in identity, with a real id of each
    kind in its path, to learn the names views read and the values their forms offer."""
    for rule in world.app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        args = sorted(rule.arguments)
        choices = [
            world.ids_for(arg) if not is_number(rule._converters[arg]) else [[str(i)] for i in world.event_ids[:1]]
            for arg in args
        ]
        for n in range(max([len(c) for c in choices] or [1])):
            values = {arg: groups[n % len(groups)][0] for arg, groups in zip(args, choices, strict=True) if groups}
            if len(values) != len(rule.arguments):
                continue
            for identity in world.identities.values():
                if identity.email is None:
                    continue
                response = world.client.get(fill_path(rule, values), headers=identity.headers())
                data = response.get_data()
                if response.status_code == 200 and response.mimetype == "text/html":
                    harvest_forms(data.decode("utf-8", "replace"))
                response.close()
    world.refresh_fingerprint()


def view_names(view) -> list[str]:
    """Names the view itself reads (its source), plus those its module's forms declare."""
    try:
        source = inspect.getsource(view)
    except (OSError, TypeError):
        return []
    names = names_in(source)
    for form_class in re.findall(r"(\w+Form)\(\)", source):
        module = inspect.getmodule(view)
        cls = getattr(module, form_class, None)
        if cls is not None:
            names |= names_in(inspect.getsource(cls))
    names.discard("csrf_token")
    return sorted(names)


# --------------------------------------------------------------------------- values
#: the sweep: every name a route reads gets each of these once, deterministically, on top of
#: the random examples (the classic 500s: int64 overflow, non-ASCII digits, float parsing,
#: dates at the edges, control characters, Python's 4300-digit int limit)
SWEEP = [
    "99999999999999999999",
    "-1",
    "١٢",
    "1e309",
    "9999-12-31",
    "0001-01-01",
    "2026-02-30",
    "a\x00\u202eb",
    "9" * 5000,
]


def value_strategy(world: World, route_names: Names) -> st.SearchStrategy[str]:
    real = (
        world.public_ids
        + world.own_ids * 2
        + world.lookup_keys
        + world.stripe_ids
        + world.event_stripe_ids
        + world.emails
        + [str(i) for i in world.event_ids]
    )
    numbers = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.sampled_from(HOSTILE_INTS).map(str),
        st.sampled_from([19, 20, 40, 4300, 4301, 5000]).map(lambda n: "9" * n),
        st.integers(min_value=-(10**6), max_value=10**6).map(
            lambda n: str(n).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        ),
        st.floats().map(repr),
        st.decimals(allow_nan=True).map(str),
    )
    return st.one_of(
        st.sampled_from(HOSTILE),
        st.sampled_from(HOSTILE),
        st.sampled_from(real),
        numbers,
        numbers,
        st.dates().map(str),
        st.sampled_from(SWEEP),
        TEXT,
        st.tuples(st.sampled_from(HOSTILE), st.sampled_from(HOSTILE)).map("".join),
    )


class NamePool:
    """The field names worth sending to one endpoint: those its source names, plus those the
    app was seen reading for it (``LEARNED``, filled while the fuzzer runs), so names read
    through helpers (``query_int("before")``) or WTForms fields are found too."""

    def __init__(self, endpoint: str, static: list[str]) -> None:
        self.endpoint, self.static = endpoint, list(static)
        # Snapshots, taken when a test builds its strategies: Hypothesis replays draws and needs
        # them to mean the same names for the whole test (names learned meanwhile changed the
        # choices under it: FlakyStrategyDefinition). What a test teaches counts from the next one.
        self.names = sorted(set(self.static) | LEARNED.get(endpoint, set()))
        self.everywhere = sorted(set(GLOBAL_NAMES).union(*LEARNED.values()))

    def current(self) -> list[str]:
        return self.names


Names = NamePool | list[str]


@st.composite
def _key(draw, pool: NamePool) -> str:
    choice = draw(st.integers(0, 4))
    names = pool.current()
    if names and choice <= 2:
        return draw(st.sampled_from(names))
    if choice <= 3:
        return draw(st.sampled_from(pool.everywhere))
    return draw(TEXT.filter(bool))


def key_strategy(route_names: Names) -> st.SearchStrategy[str]:
    pool = route_names if isinstance(route_names, NamePool) else NamePool("", route_names)
    return _key(pool)


def pairs_strategy(world: World, route_names: Names, max_size: int = 6):
    """Key/value pairs: mostly one value per key (the app reads the first), sometimes repeats."""
    pair = st.tuples(key_strategy(route_names), value_strategy(world, route_names))
    return st.one_of(
        st.lists(pair, max_size=max_size, unique_by=lambda kv: kv[0]),
        st.lists(pair, max_size=max_size, unique_by=lambda kv: kv[0]),
        st.lists(pair, max_size=max_size),
    )


def json_strategy(world: World, route_names: Names):
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(HOSTILE_INTS),
        st.integers(),
        st.floats(),
        value_strategy(world, route_names),
    )
    keys = key_strategy(route_names)
    nested = st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
        max_leaves=12,
    )
    return st.one_of(
        nested, st.dictionaries(keys, nested, max_size=6), st.dictionaries(keys, scalars, min_size=1, max_size=6)
    )


def deep_json(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


# --------------------------------------------------------------------------- path parameters
def is_number(converter) -> bool:
    return isinstance(converter, NumberConverter)


def path_value(world: World, arg: str, converter):
    """A value for ``<arg>``: a real id of the seeded store most of the time (a kind picked
    first, then an id of it: orders, users, subscriptions...), else hostile."""
    if is_number(converter):
        return st.one_of(
            st.sampled_from(world.event_ids or [1]),
            st.sampled_from(world.event_ids or [1]),
            st.sampled_from(HOSTILE_INTS),
            st.integers(min_value=0, max_value=2**80),
        ).map(str)
    groups = world.ids_for(arg) or [["x"]]
    real = st.sampled_from(groups).flatmap(st.sampled_from)
    return st.one_of(
        real,
        real,
        st.sampled_from(world.public_ids + world.stripe_ids + world.lookup_keys),
        st.sampled_from(HOSTILE).filter(bool),
        TEXT.filter(bool),
    )


def fill_path(rule, values: dict[str, str]) -> str:
    path = rule.rule
    for arg, value in values.items():
        path = re.sub(r"<(?:[^:>]+:)?" + re.escape(arg) + ">", quote(value, safe=""), path)
    return path


# --------------------------------------------------------------------------- webhook events
EVENT_TYPES = [
    "payment_intent.succeeded",
    "payment_intent.processing",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.dispute.created",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.created",
    "",
]


def webhook_request(world: World, route_names: Names) -> st.SearchStrategy:
    """A Stripe-like event (a real object with one field made hostile, or junk), its body
    encoding, and a signature: valid, stale, from the future, forged or missing."""
    values = value_strategy(world, route_names)
    any_json = json_strategy(world, route_names)
    objects = world.stripe_objects or [{"id": "pi_x", "object": "payment_intent"}]
    metadata = st.fixed_dictionaries(
        {},
        optional={
            "order_id": st.sampled_from(world.public_ids),
            "user_id": values,
            "public_id": st.sampled_from(world.public_ids),
        },
    )
    field_value = st.one_of(values, any_json, metadata)
    created: st.SearchStrategy[Any] = st.one_of(
        st.just(None), st.just(None), st.sampled_from(["abc", None, -1, 10**20, 1.5, [], "1"]), st.integers()
    )
    event_id = st.one_of(
        st.integers(0, 2**64).map(lambda n: f"evt_fz{n:x}"),
        st.sampled_from(world.event_stripe_ids or ["evt_x"]),
        values,
    )
    return _webhook_request(objects, values, any_json, field_value, created, event_id)


@st.composite
def _webhook_request(draw, objects, values, any_json, field_value, created, event_id):
    obj = dict(draw(st.sampled_from(objects)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(obj) + ["metadata", "id", "amount", "status", "customer"]))
        obj[key] = draw(field_value)
    if draw(st.booleans()):
        # half the draws: a well-formed, correctly signed event of the object's own kind, so the
        # handlers (not only the validation in front of them) meet the hostile fields
        kind = str(obj.get("object", ""))
        types = [
            t for t in EVENT_TYPES if t.startswith(kind.replace("subscription", "customer.subscription") + ".")
        ] or EVENT_TYPES
        event = {
            "id": f"evt_fz{draw(st.integers(0, 2**64)):x}",
            "object": "event",
            "type": draw(st.sampled_from(types)),
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
        text = json.dumps(event)
        return text.encode(), signature(text.encode()), f"event={text[:600]!r} (well-formed, signed)"
    data = draw(
        st.one_of(
            st.just({"object": obj}),
            st.just({"object": obj}),
            st.just({"object": obj}),
            st.just(None),
            st.just({"object": [1]}),
            st.just({"object": None}),
            st.just([]),
            any_json,
            st.just({}),
        )
    )
    stamp = draw(created)
    event = {
        "id": draw(event_id),
        "object": "event",
        "type": draw(st.sampled_from(EVENT_TYPES)),
        "created": int(time.time()) if stamp is None else stamp,
        "livemode": draw(st.one_of(st.just(False), any_json)),
        "data": data,
    }
    if draw(st.integers(0, 4)) == 0:  # a required field missing
        for key in draw(st.sets(st.sampled_from(sorted(event)), min_size=1, max_size=2)):
            event.pop(key, None)
    if draw(st.integers(0, 9)) == 0:
        event = draw(st.one_of(any_json, st.just([event])))
    text = json.dumps(event)
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "bad-utf8", "nested"]))
    if encoding == "nested":
        text = deep_json(draw(st.sampled_from([50, 1000, 5000])), draw(st.sampled_from(["list", "dict"])))
    body = text.encode("utf-16") if encoding == "utf-16" else text.encode("utf-8")
    if encoding == "bad-utf8":
        body = body[:-1] + b'"\xff\xfe"' + body[-1:] if body.endswith(b"}") else body + b"\xff"
    signing = draw(st.sampled_from(["valid"] * 6 + ["stale", "future", "forged", "missing", "junk"]))
    now = int(time.time())
    header = None
    if signing in ("valid", "stale", "future"):
        header = signature(body, {"valid": now, "stale": now - 86400, "future": now + 86400}[signing])
    elif signing == "forged":
        header = sign_payload(text, "whsec_not_the_secret")
    elif signing == "junk":
        header = draw(values)
    return body, header, f"event={text[:600]!r} encoding={encoding} signature={signing}"


def signature(body: bytes, stamp: int | None = None) -> str:
    """A valid ``Stripe-Signature`` over the raw bytes (whatever their encoding)."""
    stamp = int(time.time()) if stamp is None else stamp
    mac = hmac.new(WEBHOOK_SECRET.encode(), str(stamp).encode() + b"." + body, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


def query_string(pairs, tail: str | None) -> str:
    qs = urlencode(pairs, quote_via=quote)
    if tail:
        qs = f"{qs}&{tail}" if qs else tail
    return qs
