"""Fixtures for the sandbox's own tests: a real sandbox over HTTP and the official SDK as client."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from stripe_sandbox.testing import SandboxServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory):
    server = SandboxServer(tmp_path_factory.mktemp("sandbox") / "state.sqlite3").start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server):
    """The session's sandbox, reset to empty for each test."""
    sandbox_server.reset()
    sandbox_server.control("DELETE", "faults")
    sandbox_server.control("DELETE", "webhooks/faults")
    return sandbox_server


@pytest.fixture
def client(sandbox) -> stripe.StripeClient:
    """The official SDK pointed at the sandbox (no automatic retries: tests see every answer)."""
    return stripe.StripeClient("sk_test_sandbox_tests", base_addresses={"api": sandbox.url}, max_network_retries=0)


@pytest.fixture
def publishable_client(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient("pk_test_sandbox_tests", base_addresses={"api": sandbox.url}, max_network_retries=0)


class WebhookReceiver:
    """A tiny HTTP server that records webhook deliveries and answers a programmable status."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []  # answers to give, in order; 200 when exhausted
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver.requests.append({"body": body.decode(), "headers": dict(self.headers)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return False

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def endpoint(client, receiver):
    """A webhook endpoint for every event, pointed at ``receiver``; its secret is ``.secret``."""
    return client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
