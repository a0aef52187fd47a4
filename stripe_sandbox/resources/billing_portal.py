"""Billing portal sessions (create). The portal page itself is in ``billing_pages``."""

from __future__ import annotations

from .. import errors
from ..api import Context, endpoint
from ..primitives import new_id


@endpoint(
    "POST",
    "/v1/billing_portal/sessions",
    params="billing_portal.SessionCreateParams",
    supported=["customer", "return_url", "locale"],
)
def create_portal_session(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "customer" not in params:
        raise errors.missing_param("customer")
    customer = ctx.load(params["customer"], "customer", param="customer", status=400)
    configuration = ctx.store.meta("portal_configuration")
    if configuration is None:
        configuration = new_id("bpc")
        ctx.store.set_meta("portal_configuration", configuration)
    session_id = new_id("bps")
    session = {
        "id": session_id,
        "object": "billing_portal.session",
        "configuration": configuration,
        "created": ctx.now(),
        "customer": customer["id"],
        "customer_account": None,
        "flow": None,
        "livemode": False,
        "locale": params.get("locale"),
        "on_behalf_of": None,
        "return_url": params.get("return_url"),
        "url": f"{ctx.public_url()}/p/session/{session_id}",
    }
    ctx.store.put(session)
    return session
