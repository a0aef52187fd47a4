"""An offline, stateful stand-in for Stripe: its REST API, webhooks, Stripe.js and Checkout.

Start it with ``flask sandbox run`` (or ``python -m stripe_sandbox``); point any Stripe SDK
at it as its API base. See the README's "The Stripe sandbox" section.
"""
from .app import create_sandbox_app

__all__ = ["create_sandbox_app"]
