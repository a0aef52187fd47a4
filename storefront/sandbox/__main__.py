"""``python -m storefront.sandbox [--port N] [--state FILE]``: the sandbox without the store."""
from .cli import run_command

run_command(prog_name="python -m storefront.sandbox")  # pylint: disable=no-value-for-parameter
