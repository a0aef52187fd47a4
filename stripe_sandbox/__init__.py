"""An offline, stateful stand-in for Stripe: its REST API, webhooks, Stripe.js and Checkout.

Start it with ``stripe-sandbox --port 12111 --state FILE`` (or ``python -m stripe_sandbox``, or
``flask sandbox run`` inside an app that adds :data:`stripe_sandbox.cli.sandbox_cli`); point any
Stripe SDK at it as its API base. See the README's "The Stripe sandbox" section.
"""

from .app import create_sandbox_app

__all__ = ["create_sandbox_app"]
