"""``python -m stripe_sandbox [--port N] [--state FILE]``: the sandbox without the store."""
from .cli import run_command

run_command(prog_name="python -m stripe_sandbox")  # pylint: disable=no-value-for-parameter
