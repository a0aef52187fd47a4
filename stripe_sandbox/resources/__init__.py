"""Importing this package registers every API endpoint of the sandbox (and its jobs,
includable fields and signal listeners)."""
from . import (
    billing,
    billing_portal,
    catalog,
    charges,
    checkout,
    customers,
    events,
    intents,
    invoices,
    payment_attempts,
    payment_intents,
    payment_methods,
    proration,
    renewals,
    setup_intents,
    subscriptions,
    three_d_secure,
)

__all__ = ["billing", "billing_portal", "catalog", "charges", "checkout", "customers", "events",
           "intents", "invoices", "payment_attempts", "payment_intents", "payment_methods",
           "proration", "renewals", "setup_intents", "subscriptions", "three_d_secure"]
