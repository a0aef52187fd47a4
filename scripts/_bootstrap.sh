# Sourced by scripts/run.sh and scripts/test.sh: make sure $VENV (default .venv) exists with what the
# caller needs, then put it first on PATH.
#   BOOTSTRAP_REQUIREMENTS=requirements.txt      (run.sh, the default): running the store
#   BOOTSTRAP_REQUIREMENTS=requirements-dev.txt  (test.sh): that plus tests and tools
# Both also install this project in editable mode (pip install -e . --no-deps: the stripe-sandbox console
# script). pip only runs when requirements.txt, requirements-dev.txt or the packaging part of pyproject.toml
# changed since the last install of that set (a stamp file per set; the dev set includes the runtime one).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
BOOTSTRAP_REQUIREMENTS="${BOOTSTRAP_REQUIREMENTS:-requirements.txt}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv in $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
# One hash over everything an install depends on: both requirement files and pyproject's [build-system],
# [project] and [tool.setuptools] tables (a change to the ruff or mypy settings installs nothing).
WANT="$("$VENV/bin/python" - <<'PY'
import hashlib, json, tomllib
with open("pyproject.toml", "rb") as f:
    pyproject = tomllib.load(f)
packaging = {k: pyproject.get(k) for k in ("build-system", "project")}
packaging["setuptools"] = pyproject.get("tool", {}).get("setuptools")
digest = hashlib.sha256(json.dumps(packaging, sort_keys=True).encode())
for name in ("requirements.txt", "requirements-dev.txt"):
    with open(name, "rb") as f:
        digest.update(name.encode() + b"\0" + f.read())
print(digest.hexdigest())
PY
)"
_stamp_ok() { [ -f "$VENV/.installed-$1.sha256" ] && [ "$(cat "$VENV/.installed-$1.sha256")" = "$WANT" ]; }
_set="${BOOTSTRAP_REQUIREMENTS%.txt}"
if ! _stamp_ok "$_set" && ! _stamp_ok requirements-dev; then
  echo "==> installing $BOOTSTRAP_REQUIREMENTS and the project (editable) into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$BOOTSTRAP_REQUIREMENTS"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$WANT" > "$VENV/.installed-$_set.sha256"
fi
unset _set
export PATH="$VENV/bin:$PATH"
