"""Importing this package registers every API endpoint of the sandbox."""
from . import catalog, customers, events  # noqa: F401
