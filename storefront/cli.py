"""flask commands: init-db, catalog sync, create-admin, seed-demo, reconcile, replay-event, jobs, worker,
mail-catcher."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .extensions import db

DEMO_ADMIN = ("admin@example.com", "Demo Admin", "admin-demo-pass-2024")
DEMO_BUYER = ("buyer@example.com", "Demo Buyer", "buyer-demo-pass-2024")


def run_migrations() -> None:
    from flask_migrate import upgrade

    upgrade()


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database schema (runs the Alembic migrations)."""
    run_migrations()
    click.echo(f"Database is up to date ({_safe_url()}).")


def _safe_url() -> str:
    return db.engine.url.render_as_string(hide_password=True)


@click.group("catalog")
def catalog_cli() -> None:
    """The product catalog."""


@catalog_cli.command("sync")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Catalog file (default: storefront/catalog.toml or $CATALOG_PATH).",
)
@click.option("--db-only", is_flag=True, help="Load into the database without talking to Stripe.")
@with_appcontext
def catalog_sync_command(path: str | None, db_only: bool) -> None:
    """Load the catalog file into the DB and sync Stripe products/prices by lookup_key."""
    from .services.catalog import CatalogError, sync_catalog
    from .stripe_gateway import GatewayError

    try:
        db_report, stripe_report = sync_catalog(path, to_stripe=not db_only)
    except CatalogError as err:
        raise click.ClickException(str(err)) from err
    except GatewayError as err:
        raise click.ClickException(f"Stripe sync failed: {err.detail or err.user_message}") from err
    click.echo(f"Database: {db_report.summary()}")
    if not db_only:
        click.echo(f"Stripe ({current_app.config['STRIPE_MODE']}): {stripe_report.summary()}")
        for line in stripe_report.created + stripe_report.updated + stripe_report.archived:
            click.echo(f"  {line}")


@click.command("create-admin")
@click.argument("email")
@click.option("--password", default=None, help="Password (prompted if omitted for a new user).")
@click.option("--name", default=None, help="Display name.")
@with_appcontext
def create_admin_command(email: str, password: str | None, name: str | None) -> None:
    """Create an admin user, or make an existing user an admin."""
    from .services.accounts import AccountError, create_or_promote_admin, email_exists

    if password is None and not email_exists(email):
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user, created = create_or_promote_admin(email, password, name)
    except AccountError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{'Created' if created else 'Updated'} admin {user.email}.")


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Create the demo admin and demo buyer (idempotent; their addresses count as verified) and
    print their logins."""
    from .models import User, utcnow
    from .services.accounts import create_or_promote_admin, email_exists, ensure_stripe_customer, register_user
    from .stripe_gateway import GatewayError

    email, name, password = DEMO_ADMIN
    create_or_promote_admin(email, password, name)
    email, name, password = DEMO_BUYER
    if not email_exists(email):
        register_user(email, name, password)
    for email in (DEMO_ADMIN[0], DEMO_BUYER[0]):
        user = db.session.scalar(db.select(User).where(User.email == email))
        if user.email_verified_at is None:  # demo addresses are ours: no link to click
            user.email_verified_at = utcnow()
            db.session.commit()
        try:
            ensure_stripe_customer(user)
        except GatewayError:
            click.echo(f"  (Stripe customer for {email} will be created on first need)")
    click.echo("Demo logins:")
    click.echo(f"  admin: {DEMO_ADMIN[0]} / {DEMO_ADMIN[2]}")
    click.echo(f"  buyer: {DEMO_BUYER[0]} / {DEMO_BUYER[2]}")


@click.group("stripe")
def stripe_cli() -> None:
    """Stripe (or sandbox) setup."""


@stripe_cli.command("register-webhook")
@click.argument("url")
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the endpoint's signing secret to this file (mode 600) instead of printing it.",
)
@with_appcontext
def register_webhook_command(url: str, secret_file: str | None) -> None:
    """Register URL (e.g. https://shop.example/api/stripe/webhook) as a webhook endpoint."""
    from .services.webhooks import ENABLED_EVENTS, register_endpoint

    endpoint, secret = register_endpoint(url)
    click.echo(f"Webhook endpoint {endpoint['id']} -> {url} ({len(ENABLED_EVENTS)} event types)")
    if not secret:  # Stripe returns it when the endpoint is created; without it nothing can verify
        raise click.ClickException(f"Stripe returned no signing secret for endpoint {endpoint['id']}.")
    if secret_file:
        path = Path(secret_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret + "\n", encoding="utf-8")
        path.chmod(0o600)
        click.echo(f"Signing secret written to {path}; set STRIPE_WEBHOOK_SECRET from it.")
    else:
        click.echo(f"STRIPE_WEBHOOK_SECRET={secret}")


@click.command("reconcile")
@click.option(
    "--days",
    default=3,
    show_default=True,
    type=click.IntRange(1, 90),
    help="How many days of Stripe objects to compare with our orders.",
)
@with_appcontext
def reconcile_command(days: int) -> None:
    """Repair orders a lost webhook left behind (applies Stripe's state; prints changes)."""
    from .services.reconcile import ReconcileError, reconcile

    try:
        report = reconcile(days)
    except ReconcileError as err:
        raise click.ClickException(str(err)) from err
    for change in report.changes:
        click.echo(f"  {change}")
    for error in report.errors:
        click.echo(f"  error: {error}", err=True)
    click.echo(report.summary())


@click.command("replay-event")
@click.argument("event_id")
@with_appcontext
def replay_event_command(event_id: str) -> None:
    """Run a stored Stripe event's handler again (EVENT_ID: evt_...)."""
    from .models import StripeEvent
    from .services.webhooks import process

    row = db.session.scalar(db.select(StripeEvent).where(StripeEvent.stripe_id == event_id))
    if row is None:
        raise click.ClickException(f"No stored event {event_id}.")
    outcome = process(row.id, source_prefix="replay")
    if outcome.status != 200:
        db.session.refresh(row)
        raise click.ClickException(f"Replaying {event_id} failed: {row.error}")
    click.echo(f"Replayed {event_id} ({row.type}).")


@click.group("jobs")
def jobs_cli() -> None:
    """Scheduled jobs: list them, or run one now (recorded like a scheduled run)."""


@jobs_cli.command("list")
@with_appcontext
def jobs_list_command() -> None:
    """Each job with its schedule and last run."""
    from .services.maintenance import overview

    for status in overview():
        last = status.last
        ran = f"{last.started_at:%Y-%m-%d %H:%M} {last.outcome}: {last.summary or last.error}" if last else "never run"
        click.echo(f"{status.job.name:<20} {status.job.schedule:<45} {ran}")


@jobs_cli.command("run")
@click.argument("name")
@with_appcontext
def jobs_run_command(name: str) -> None:
    """Run job NAME now (see `flask jobs list`); exits non-zero if it failed."""
    from .services.maintenance import JOBS, run_job

    if name not in JOBS:
        raise click.ClickException(f"No job {name!r}; one of: {', '.join(JOBS)}.")
    run = run_job(name, trigger="cli")
    if run.summary:
        click.echo(run.summary)
    if run.outcome not in ("ok", "skipped"):  # skipped: another run of it is running
        raise click.ClickException(f"{name} failed: {run.error}")


@click.command("worker")
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker threads.")
@click.option("--no-periodic", is_flag=True, help="Don't run the periodic tasks (another worker runs them).")
@with_appcontext
def worker_command(workers: int, no_periodic: bool) -> None:
    """Run a queue worker (Huey consumer): processes webhook events and the periodic tasks."""
    from .jobs import make_consumer

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    huey_log = logging.getLogger("huey")  # its warnings and errors (a queue it can't reach) as ours
    huey_log.setLevel(logging.WARNING)
    for handler in logging.getLogger("storefront").handlers:
        huey_log.addHandler(handler)
    consumer = make_consumer(app, workers=workers, periodic=not no_periodic)
    click.echo(f"Queue worker: {workers} thread(s) on {type(consumer.huey.storage).__name__}")
    consumer.run()


@click.command("mail-catcher")
@click.option(
    "--port", default=8025, show_default=True, type=click.IntRange(1, 65535), help="SMTP port (on 127.0.0.1)."
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where caught mail is written (default: $MAIL_CATCHER_DIR, else instance/mail).",
)
@click.option("--keep", default=500, show_default=True, type=click.IntRange(1), help="How many messages to keep.")
@with_appcontext
def mail_catcher_command(port: int, directory: str | None, keep: int) -> None:
    """Catch the store's mail (sandbox): an SMTP server on 127.0.0.1 writing each message as an .eml file."""
    import signal
    import threading

    from .mail_catcher import HOST, MailCatcher, dev_mail_dir

    folder = Path(directory) if directory else dev_mail_dir(current_app.config, current_app.instance_path)
    try:
        catcher = MailCatcher(folder, port=port, keep=keep).start()
    except (OSError, RuntimeError) as err:  # the port is taken, or the server did not come up
        raise click.ClickException(f"The mail catcher could not listen on {HOST}:{port}: {err}") from err
    click.echo(f"Mail catcher: smtp://{HOST}:{port} -> {folder} (newest {keep} kept)")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        catcher.stop()


def register(app: Flask) -> None:
    app.cli.add_command(stripe_cli)
    app.cli.add_command(init_db_command)
    app.cli.add_command(catalog_cli)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(reconcile_command)
    app.cli.add_command(replay_event_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(mail_catcher_command)
