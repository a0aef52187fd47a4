"""The sandbox as its own process.

* ``stripe-sandbox --port 12111 --state FILE [--merchant-name NAME]`` (the console script,
  :func:`main`), or ``python -m stripe_sandbox`` with the same options;
* ``flask sandbox run``: the same command as an alias inside a Flask app's CLI
  (:data:`sandbox_cli`), whose state file defaults to that app's instance folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from werkzeug.serving import run_simple

from .app import create_sandbox_app

DEFAULT_PORT = 12111


def serve(host: str, port: int, state: str, *, strict: bool = False, merchant_name: str | None = None) -> None:
    app = create_sandbox_app(state, strict=strict, merchant_name=merchant_name)
    click.echo(f"Stripe sandbox on http://{host}:{port} (state: {state})")
    run_simple(host, port, app, threaded=True, use_reloader=False)


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``stripe-sandbox`` and ``flask sandbox run``."""
    options = [
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option(
            "--port",
            default=lambda: int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT)),
            type=int,
            show_default=str(DEFAULT_PORT),
            help="Port to listen on [env: SANDBOX_PORT].",
        ),
        click.option(
            "--state", default=None, help="SQLite file holding the sandbox's state [default: instance/sandbox.sqlite3]."
        ),
        click.option(
            "--strict/--no-strict", default=False, help="Answer 500 for any object that does not fit the SDK's model."
        ),
        click.option(
            "--merchant-name",
            envvar="SANDBOX_MERCHANT_NAME",
            default=None,
            help="Business name shown on the hosted Checkout and 3-D Secure pages and "
            "as invoices' account_name [env: SANDBOX_MERCHANT_NAME; default: "
            "Storefront (sandbox)].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("stripe-sandbox")
@_run_options
def run_command(host: str, port: int, state: str | None, strict: bool, merchant_name: str | None) -> None:
    """Serve the Stripe sandbox (API, webhooks, Stripe.js stand-in, hosted Checkout)."""
    serve(host, port, state or str(Path("instance") / "sandbox.sqlite3"), strict=strict, merchant_name=merchant_name)


def main() -> None:
    """The ``stripe-sandbox`` console script."""
    run_command(prog_name="stripe-sandbox")


sandbox_cli = AppGroup("sandbox", help="The offline Stripe sandbox.")


@sandbox_cli.command("run")
@_run_options
def flask_run_command(host: str, port: int, state: str | None, strict: bool, merchant_name: str | None) -> None:
    """Serve the Stripe sandbox (API, webhooks, Stripe.js stand-in, hosted Checkout)."""
    state = state or str(Path(current_app.instance_path) / "sandbox.sqlite3")
    serve(host, port, state, strict=strict, merchant_name=merchant_name)
