#!/usr/bin/env bash
# Creates the Python environment the Papr SDK tests (test/e2e/papr-sdk.test.ts) drive the official `papr-memory`
# client from: a venv under .cache/papr-venv with the pinned versions of test/papr/requirements.txt, installed from
# the package registry. Idempotent: skipped when the venv already holds exactly those versions.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.cache/papr-venv"
REQUIREMENTS="$ROOT/test/papr/requirements.txt"

if [[ -x $VENV/bin/python ]] && diff -q <("$VENV/bin/python" -m pip freeze --disable-pip-version-check | sort) <(sort "$REQUIREMENTS") >/dev/null; then
  echo "[papr-python] $VENV is up to date"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
echo "[papr-python] $VENV: $("$VENV/bin/python" -m pip show papr-memory | grep -i '^version')"
