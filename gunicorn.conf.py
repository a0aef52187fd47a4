"""gunicorn settings (read from the working directory: ``gunicorn wsgi:app``).

Metrics of several workers add up when ``PROMETHEUS_MULTIPROC_DIR`` is set (storefront/metrics.py):
the directory is made if missing and a worker that exits has its live gauges marked dead. It is
not emptied here: a queue worker started beside gunicorn may already write there. Whoever starts
the processes empties it first (``scripts/run.sh`` does; under systemd a ``RuntimeDirectory=``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "2"))


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
