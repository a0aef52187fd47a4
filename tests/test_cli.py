from sqlalchemy import select

from storefront.extensions import db
from storefront.models import User

from .conftest import found


def test_create_admin_creates_and_promotes(app, runner, sandbox):
    result = runner.invoke(
        args=["create-admin", "Boss@Example.com", "--password", "a-strong-admin-pass", "--name", "Boss"]
    )
    assert result.exit_code == 0, result.output
    assert "Created admin boss@example.com" in result.output
    with app.app_context():
        user = found(db.session.scalar(select(User).where(User.email == "boss@example.com")), "boss@example.com")
        assert user.is_admin and user.check_password("a-strong-admin-pass") and user.stripe_customer_id
    result = runner.invoke(args=["create-admin", "boss@example.com"])
    assert result.exit_code == 0 and "Updated admin" in result.output


def test_create_admin_refuses_weak_password(runner, sandbox):
    result = runner.invoke(args=["create-admin", "x@example.com", "--password", "123"])
    assert result.exit_code != 0 and "at least 10 characters" in result.output


def test_seed_demo_is_idempotent_and_prints_logins(app, runner, sandbox):
    for _ in range(2):
        result = runner.invoke(args=["seed-demo"])
        assert result.exit_code == 0, result.output
    assert "admin@example.com" in result.output and "buyer@example.com" in result.output
    with app.app_context():
        users = db.session.scalars(select(User).order_by(User.email)).all()
        assert [(u.email, u.is_admin) for u in users] == [("admin@example.com", True), ("buyer@example.com", False)]
    assert len(sandbox.customers(email="buyer@example.com")) == 1
    assert len(sandbox.customers(email="admin@example.com")) == 1


def test_init_db_is_repeatable(runner):
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0 and "up to date" in result.output


def test_sandbox_command_is_registered(app):
    assert "sandbox" in app.cli.list_commands(None)
