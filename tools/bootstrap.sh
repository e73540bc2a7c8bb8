#!/usr/bin/env bash
# Creates or updates .venv (Python 3.11) with everything SeqRank needs. Idempotent: a stamp keyed
# on the requirement files makes a second run a no-op.
# Usage: tools/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

log() { echo "[bootstrap] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY" >/dev/null || PY=python3
  "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "[bootstrap] error: Python 3.11 is required (found $("$PY" --version))" >&2; exit 1; }
  log "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

reqs="requirements.txt"
[ $DEV = 1 ] && reqs="$reqs requirements-dev.txt"
stamp="$VENV/.seqrank-stamp-$(cat $reqs requirements-nodeps.txt setup.py tools/bootstrap.sh tools/install_detectron2.sh | sha1sum | cut -c1-12)-$DEV"
if [ -f "$stamp" ]; then
  log "environment up to date ($VENV)"
  exit 0
fi

log "installing pinned requirements: $reqs"
"$VPY" -m pip install --quiet --upgrade "pip==25.3" setuptools==80.9.0 wheel
req_args=()
for r in $reqs; do req_args+=(-r "$r"); done
"$VPY" -m pip install --quiet "${req_args[@]}"
log "installing requirements-nodeps.txt without their dependency pins (see the file)"
"$VPY" -m pip install --quiet --no-deps -r requirements-nodeps.txt

bash tools/install_detectron2.sh "$VPY"

log "installing seqrank (editable)"
"$VPY" -m pip install --quiet --no-deps --no-build-isolation -e .

if [ $DEV = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing Debian chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || log "warning: chromium could not be installed; the browser test will be skipped"
  else
    log "warning: /usr/bin/chromium missing and apt-get unavailable; the browser test will be skipped"
  fi
fi

rm -f "$VENV"/.seqrank-stamp-*
touch "$stamp"
log "done"
