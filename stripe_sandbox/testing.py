"""Run a sandbox in a background thread for tests: ``SandboxServer(state_path).start()``."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import ClassVar

from werkzeug.serving import make_server

from .app import create_sandbox_app


class SandboxServer:
    """A real HTTP sandbox on 127.0.0.1 (``port=0`` picks a free port); ``url`` once started."""

    #: every server started in this process, for the conformance report (pytest_plugin)
    started: ClassVar[list[SandboxServer]] = []

    def __init__(
        self,
        state_path=None,
        port: int = 0,
        *,
        strict: bool = True,
        webhook_retry_base: float = 0.2,
        webhook_timeout: float = 5.0,
        **options,
    ):
        self.app = create_sandbox_app(
            state_path,
            strict=strict,
            webhook_retry_base=webhook_retry_base,
            webhook_timeout=webhook_timeout,
            start_threads=False,
            **options,
        )
        self._server = make_server("127.0.0.1", port, self.app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.app.config["SANDBOX_PUBLIC_URL"] = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=f"sandbox-{self.port}")

    @property
    def sandbox(self):
        return self.app.extensions["sandbox"]

    def start(self) -> SandboxServer:
        SandboxServer.started.append(self)
        self.sandbox.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self.sandbox.stop()
        self.sandbox.store.close()

    # --- control routes, as any test would call them over HTTP ------------------------------
    def control(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - self.url is always http://127.0.0.1:<port>
            f"{self.url}/_sandbox/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - as above
            return json.loads(response.read() or b"{}")

    def reset(self) -> None:
        self.control("POST", "reset")

    def fault(self, mode: str, count: int = 1, path_prefix: str = "/v1/", **extra) -> None:
        self.control("POST", "faults", {"mode": mode, "count": count, "path_prefix": path_prefix, **extra})

    def advance_clock(self, seconds: int) -> dict:
        return self.control("POST", "clock/advance", {"seconds": seconds})

    def flush_webhooks(self, timeout: float = 10) -> bool:
        return self.control("POST", "webhooks/flush", {"timeout": timeout}).get("idle", False)

    def deliveries(self) -> list[dict]:
        return self.control("GET", "deliveries")["deliveries"]
