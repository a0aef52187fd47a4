"""The admin area with subscriptions (issue 6): active plans on the dashboard, the buyer's
subscription on their page, and reconciliation of a renewal invoice whose webhooks were lost."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import Order

from .test_admin import balance, snapshot
from .test_subscriptions import MONTH, advance, flush, sub_row, subscribed


def test_dashboard_counts_active_subscriptions_by_plan(app, admin, buyer, sandbox):
    subscribed(app, buyer, sandbox, "starter_monthly")
    html = admin.get("/admin/").get_data(as_text=True)
    assert re.search(r"<td>Starter Plan</td><td class=\"num\">1</td>", html), html[html.find("Active subscriptions") :][
        :800
    ]
    row = sub_row(app)
    with app.app_context():
        from storefront.models import User

        public_id = db.session.scalar(select(User.public_id).where(User.email == "buyer@example.com"))
    page = admin.get(f"/admin/buyers/{public_id}").get_data(as_text=True)
    assert row.stripe_subscription_id in page and row.status in page and "Starter Plan" in page


def test_reconcile_credits_a_renewal_whose_webhooks_were_lost(app, admin, buyer, sandbox, webhooks):
    subscribed(app, buyer, sandbox, "starter_monthly")
    flush(sandbox)
    start = balance(app)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"drop": 1000})
    advance(sandbox, MONTH + 60)
    flush(sandbox)
    with app.app_context():
        invoices_before = db.session.execute(
            select(func.count(Order.id)).where(Order.method == "subscription_invoice")
        ).scalar_one()
    assert balance(app) == start  # nothing arrived
    page = admin.post("/admin/reconcile", data={"days": "40"}).get_data(as_text=True)
    assert "Nothing to repair" not in page
    with app.app_context():
        invoices_after = db.session.execute(
            select(func.count(Order.id)).where(Order.method == "subscription_invoice")
        ).scalar_one()
    assert invoices_after == invoices_before + 1
    assert balance(app) > start
    before = snapshot(app)
    again = admin.post("/admin/reconcile", data={"days": "40"}).get_data(as_text=True)
    assert "0 change(s)" in again
    assert snapshot(app) == before
