"""Importing this package registers every API endpoint of the sandbox."""
from . import catalog, customers, events  # noqa: F401
from . import payment_methods, setup_intents, payment_intents, charges  # noqa: F401
from . import billing, checkout  # noqa: F401
