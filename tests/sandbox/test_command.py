"""The sandbox as its own process: `python -m stripe_sandbox` / `flask sandbox run`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import stripe

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 20) -> None:
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            urllib.request.urlopen(f"{url}/_sandbox/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("sandbox did not start")


def test_flask_sandbox_run_serves_the_api_and_keeps_state(tmp_path):
    port = _free_port()
    state = tmp_path / "state.sqlite3"
    env = {**os.environ, "FLASK_APP": "wsgi.py", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flask", "sandbox", "run", "--port", str(port),
               "--state", str(state), "--strict"]
    url = f"http://127.0.0.1:{port}"
    for attempt in range(2):  # the second run proves the state survived the restart
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            _wait_until_up(url, process)
            client = stripe.StripeClient("sk_test_cli", base_addresses={"api": url},
                                         max_network_retries=0)
            if attempt == 0:
                client.v1.customers.create(params={"email": "cli@example.com"})
            found = client.v1.customers.list(params={"email": "cli@example.com"}).data
            assert len(found) == 1
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert state.exists()
