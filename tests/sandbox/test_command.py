"""The sandbox as its own process: ``stripe-sandbox`` / ``python -m stripe_sandbox`` and the
store's ``flask sandbox run`` alias."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import stripe

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            urllib.request.urlopen(f"{url}/_sandbox/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("sandbox did not start")


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_cli", base_addresses={"api": url}, max_network_retries=0)


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_flask_sandbox_run_serves_the_api_and_keeps_state(tmp_path):
    port = _free_port()
    state = tmp_path / "state.sqlite3"
    env = {**os.environ, "FLASK_APP": "wsgi.py", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flask", "sandbox", "run", "--port", str(port), "--state", str(state), "--strict"]
    url = f"http://127.0.0.1:{port}"
    for attempt in range(2):  # the second run proves the state survived the restart
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_until_up(url, process)
            client = _client(url)
            if attempt == 0:
                client.v1.customers.create(params={"email": "cli@example.com"})
            found = client.v1.customers.list(params={"email": "cli@example.com"}).data
            assert len(found) == 1
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert state.exists()


def test_the_console_script_serves_the_api_with_its_merchant_name(tmp_path):
    """``stripe-sandbox`` is ``stripe_sandbox.cli:main``: run it as the console script would,
    without the store (no FLASK_APP, started outside the checkout)."""
    port = _free_port()
    state = tmp_path / "state.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "SANDBOX_MERCHANT_NAME")}
    env["PYTHONPATH"] = str(ROOT)
    command = [
        sys.executable,
        "-c",
        "import sys; from stripe_sandbox.cli import main; sys.argv[0] = 'stripe-sandbox'; main()",
        "--port",
        str(port),
        "--state",
        str(state),
        "--merchant-name",
        "Acme <Books>",
    ]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_until_up(url, process)
        client = _client(url)
        price = client.v1.prices.create(
            params={"currency": "usd", "unit_amount": 1200, "product_data": {"name": "Atlas"}}
        )
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": "https://shop.test/ok",
            }
        )
        assert session.url == f"{url}/c/pay/{session.id}"
        page = _page(session.url)
        assert "Pay Acme &lt;Books&gt;" in page  # the name, autoescaped
        assert "Storefront (sandbox)" not in page
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert state.exists()


def test_python_m_stripe_sandbox_takes_the_same_options():
    result = subprocess.run(
        [sys.executable, "-m", "stripe_sandbox", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("Usage: python -m stripe_sandbox [OPTIONS]")
    for option in ("--port", "--state", "--merchant-name", "--strict"):
        assert option in result.stdout
