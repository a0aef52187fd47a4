"""``flask sandbox run``: serve the sandbox on its own port (default 127.0.0.1:12111)."""
from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

sandbox_cli = AppGroup("sandbox", help="The offline Stripe sandbox.")

DEFAULT_PORT = 12111


def _default_state_path() -> str:
    try:
        instance = current_app.instance_path
    except RuntimeError:  # run without a storefront app context
        instance = "instance"
    return str(Path(instance) / "sandbox.sqlite3")


def serve(host: str, port: int, state: str, *, strict: bool = False) -> None:
    from werkzeug.serving import run_simple

    from . import create_sandbox_app

    app = create_sandbox_app(state, strict=strict)
    click.echo(f"Stripe sandbox on http://{host}:{port} (state: {state})")
    run_simple(host, port, app, threaded=True, use_reloader=False)


@sandbox_cli.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=lambda: int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT)),
              type=int, show_default=str(DEFAULT_PORT))
@click.option("--state", default=None, help="SQLite file holding the sandbox's state "
              "[default: instance/sandbox.sqlite3].")
@click.option("--strict/--no-strict", default=False,
              help="Answer 500 for any object that does not fit the SDK's model.")
def run_command(host: str, port: int, state: str | None, strict: bool) -> None:
    """Serve the Stripe sandbox (API, webhooks, Stripe.js stand-in, hosted Checkout)."""
    serve(host, port, state or _default_state_path(), strict=strict)
