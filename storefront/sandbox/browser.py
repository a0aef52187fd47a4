"""Browser-facing pages of the sandbox: the Stripe.js stand-in and the hosted Checkout page.

(Built in "Stripe sandbox, part 2"; this module keeps the blueprint the app registers.)
"""
from __future__ import annotations

from flask import Blueprint

browser = Blueprint("sandbox_browser", __name__)
