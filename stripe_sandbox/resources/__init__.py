"""Importing this package registers every API endpoint of the sandbox."""
from . import billing, catalog, charges, checkout, customers, events, payment_intents, payment_methods, setup_intents

__all__ = ["billing", "catalog", "charges", "checkout", "customers", "events", "payment_intents",
           "payment_methods", "setup_intents"]
