"""One module per aggregate."""

from .base import utcnow
from .catalog import Price, Product
from .job_run import JobRun
from .ledger import PointsEntry
from .order import Order, OrderTransition
from .outbound_mail import OutboundMail
from .refund import Refund
from .stripe_event import StripeEvent
from .subscription import Subscription
from .user import User
from .user_session import UserSession

__all__ = [
    "JobRun",
    "Order",
    "OrderTransition",
    "OutboundMail",
    "PointsEntry",
    "Price",
    "Product",
    "Refund",
    "StripeEvent",
    "Subscription",
    "User",
    "UserSession",
    "utcnow",
]
