#!/usr/bin/env bash
# Create .venv at the repo root and install ohem-tune with its pinned dependencies (+ dev tools).
# Idempotent: a second run only checks a stamp (pyproject.toml's hash) and returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
# TeX for the report's LaTeX compile test, where this machine allows it (root + apt: CI, containers);
# elsewhere the test skips and says why. Debian's texlive-latex-recommended: ~100 s, once.
if ! command -v pdflatex >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing TeX (texlive-latex-recommended) for the LaTeX compile test"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends texlive-latex-recommended; } >/tmp/ohem-tune-tex.log 2>&1; then
    tail -5 /tmp/ohem-tune-tex.log
    echo "setup: TeX install failed (log: /tmp/ohem-tune-tex.log); the LaTeX compile test will fail" >&2
  fi
fi
stamp=.venv/.ohem-tune-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import ohem_tune" 2>/dev/null; then
  echo "setup: .venv is up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
echo "setup: installing ohem-tune and its pinned dependencies into .venv (a few minutes the first time)"
log=.venv/setup.log
if ! .venv/bin/python -m pip install --progress-bar off -e '.[dev]' >"$log" 2>&1; then
  grep -v '^WARNING: Location' "$log" | tail -30
  echo "setup: pip install failed (full log: $log)" >&2
  exit 1
fi
.venv/bin/python -c "import ohem_tune, torch, ray, mlflow" >/dev/null
.venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check; exit 1; }
echo "$want" > "$stamp"
echo "setup: done"
