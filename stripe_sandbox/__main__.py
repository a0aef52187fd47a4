"""``python -m stripe_sandbox [--port N] [--state FILE] [--merchant-name NAME]``: the sandbox
without the store (the same command as the ``stripe-sandbox`` console script)."""

from .cli import run_command

run_command(prog_name="python -m stripe_sandbox")
