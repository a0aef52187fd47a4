#!/usr/bin/env bash
# THE test command: bash scripts/test.sh [pytest args]
# Uses SQLite by default; set TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
# to run the same suite on PostgreSQL. Browser tests run when Chromium is installed.
# Installs requirements-dev.txt (which includes requirements.txt) and the project itself into .venv.
set -euo pipefail
BOOTSTRAP_REQUIREMENTS=requirements-dev.txt
source "$(dirname "$0")/_bootstrap.sh"
exec "$VENV/bin/python" -m pytest -q "$@"
