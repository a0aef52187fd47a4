#!/usr/bin/env bash
# THE run command: bash scripts/run.sh
# Creates .venv if needed, migrates the SQLite DB in instance/, starts the Stripe sandbox
# (unless STRIPE_SECRET_KEY is set), syncs the catalog, seeds the demo users, starts a queue
# worker (`flask worker`: webhook events, mail and the scheduled jobs; SQLite queue in instance/ unless
# QUEUE_URL or REDIS_URL is set) and serves the store on http://127.0.0.1:${PORT:-5000}.
# Mail: with the sandbox, `flask mail-catcher` (SMTP on 127.0.0.1:${MAIL_CATCHER_PORT:-8025}) catches
# every message into instance/mail/ -- shown at /dev/mail -- unless you set MAIL_SERVER yourself.
# SECRET_KEY: with the sandbox, a random key is made once and kept in instance/secret_key (not in
# git); with real Stripe keys (test or live mode) you must export your own (32+ random bytes).
set -euo pipefail
source "$(dirname "$0")/_bootstrap.sh"

export FLASK_APP=storefront
PORT="${PORT:-5000}"
HOST="${HOST:-127.0.0.1}"
SANDBOX_PORT="${SANDBOX_PORT:-12111}"
MAIL_CATCHER_PORT="${MAIL_CATCHER_PORT:-8025}"
mkdir -p instance

SANDBOX_PID=""
WORKER_PID=""
SERVER_PID=""
MAIL_PID=""
cleanup() {
  trap - EXIT INT TERM
  for pid in $SERVER_PID $WORKER_PID $MAIL_PID $SANDBOX_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
  export STRIPE_API_BASE="${STRIPE_API_BASE:-http://127.0.0.1:$SANDBOX_PORT}"
  echo "==> starting the Stripe sandbox on $STRIPE_API_BASE (log: instance/sandbox.log)"
  flask sandbox run --port "$SANDBOX_PORT" --state instance/sandbox.sqlite3 > instance/sandbox.log 2>&1 &
  SANDBOX_PID=$!
  for _ in $(seq 1 100); do
    if python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$STRIPE_API_BASE/_sandbox/health" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
      echo "!! the sandbox did not start; see instance/sandbox.log" >&2
      tail -n 20 instance/sandbox.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
else
  echo "==> using Stripe with the keys from the environment (no sandbox)"
  if [ -z "${SECRET_KEY:-}" ]; then
    echo "!! SECRET_KEY is required with real Stripe keys (it signs sessions). Create one with:" >&2
    echo "   export SECRET_KEY=\"\$(python -c 'import secrets; print(secrets.token_hex(32))')\"" >&2
    exit 1
  fi
fi

echo "==> migrating the database"
flask init-db
echo "==> syncing the catalog"
flask catalog sync
echo "==> demo users"
flask seed-demo
if [ -n "$SANDBOX_PID" ]; then
  echo "==> registering the store's webhook endpoint with the sandbox"
  flask stripe register-webhook "http://$HOST:$PORT/api/stripe/webhook" \
    --secret-file instance/webhook_secret
  STRIPE_WEBHOOK_SECRET="$(cat instance/webhook_secret)"
  export STRIPE_WEBHOOK_SECRET
elif [ -z "${STRIPE_WEBHOOK_SECRET:-}" ]; then
  echo "!! STRIPE_WEBHOOK_SECRET is not set: the store will refuse every webhook." >&2
  echo "   Register https://<your host>/api/stripe/webhook in Stripe's dashboard (or with" >&2
  echo "   'flask stripe register-webhook URL') and set the signing secret." >&2
fi

# Links in mail point at this store (STORE_URL; EXTERNAL_URL when that is set instead).
if [ -z "${STORE_URL:-}" ] && [ -z "${EXTERNAL_URL:-}" ]; then
  case "$HOST" in 0.0.0.0 | ::) STORE_URL="http://127.0.0.1:$PORT" ;; *) STORE_URL="http://$HOST:$PORT" ;; esac
  export STORE_URL
fi
# Mail: in sandbox mode it never leaves this machine. The catcher starts before the worker that sends.
if [ -n "$SANDBOX_PID" ] && [ -z "${MAIL_SERVER:-}" ]; then
  export MAIL_SERVER=127.0.0.1 MAIL_PORT="$MAIL_CATCHER_PORT"
  export MAIL_CATCHER_DIR="${MAIL_CATCHER_DIR:-$PWD/instance/mail}"
  echo "==> starting the mail catcher on smtp://127.0.0.1:$MAIL_CATCHER_PORT (log: instance/mail-catcher.log)"
  rm -f instance/mail-catcher.log
  PYTHONUNBUFFERED=1 flask mail-catcher --port "$MAIL_CATCHER_PORT" --dir "$MAIL_CATCHER_DIR" \
    > instance/mail-catcher.log 2>&1 &
  MAIL_PID=$!
  for _ in $(seq 1 100); do
    if grep -q '^Mail catcher:' instance/mail-catcher.log 2>/dev/null; then
      break  # it says so once it listens
    fi
    if ! kill -0 "$MAIL_PID" 2>/dev/null; then
      echo "!! the mail catcher did not start (port $MAIL_CATCHER_PORT taken? set MAIL_CATCHER_PORT);" \
        "see instance/mail-catcher.log" >&2
      tail -n 20 instance/mail-catcher.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
elif [ -n "${MAIL_SERVER:-}" ]; then
  echo "==> mail goes to your SMTP server $MAIL_SERVER:${MAIL_PORT:-25}"
else
  echo "!! MAIL_SERVER is not set: the store's mail (receipts, password resets) stays unsent" >&2
  echo "   until you set MAIL_SERVER, MAIL_PORT and MAIL_DEFAULT_SENDER (README \"Email\")." >&2
fi

# Metrics of the store's processes (gunicorn workers, the queue worker) add up in one directory,
# emptied before they start (README "Operations"); the commands above are not counted.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/instance/prometheus}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete

QUEUE_WORKERS="${QUEUE_WORKERS:-2}"
echo "==> starting a queue worker, $QUEUE_WORKERS threads (log: instance/worker.log)"
flask worker --workers "$QUEUE_WORKERS" > instance/worker.log 2>&1 &
WORKER_PID=$!

echo
echo "==> Storefront: http://$HOST:$PORT   (Ctrl-C stops the store, its worker and the sandbox)"
if [ -n "$MAIL_PID" ]; then
  echo "==> Caught mail: http://127.0.0.1:$PORT/dev/mail   (from this machine only; files in $MAIL_CATCHER_DIR)"
fi
echo
# The server runs in the background so a signal to this script stops it, the worker and the sandbox.
if [ "${USE_GUNICORN:-0}" = "1" ]; then
  gunicorn -c gunicorn.conf.py -w "${WORKERS:-2}" -b "$HOST:$PORT" wsgi:app &
else
  flask run --host "$HOST" --port "$PORT" &
fi
SERVER_PID=$!
wait "$SERVER_PID"
