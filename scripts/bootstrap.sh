# Sourced by the other scripts: a .venv with the package and its test extra,
# rebuilt only when pyproject.toml changes, and flux-core's bindings on
# PYTHONPATH when `flux` is on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${AIRFLOW_PROVIDER_FLUX_VENV:-$ROOT/.venv}"
PYTHON_BIN="$(command -v python3.11 || command -v python3)"
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    echo "==> setting up $VENV (first run, or pyproject.toml changed)" >&2
    "$PYTHON_BIN" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
if command -v flux >/dev/null 2>&1; then
    FLUX_PYTHONPATH="$(flux config builtin python_path)"
    export PYTHONPATH="$FLUX_PYTHONPATH${PYTHONPATH:+:$PYTHONPATH}"
fi
