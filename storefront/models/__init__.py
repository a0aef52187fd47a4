"""One module per aggregate. Orders, ledger, subscriptions and Stripe events join later."""
from .base import utcnow
from .catalog import Price, Product
from .user import User

__all__ = ["Price", "Product", "User", "utcnow"]
