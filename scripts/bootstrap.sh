# Sourced by the other scripts: a .venv with the package and its test extra (the
# newest Airflow its dependencies allow), rebuilt only when pyproject.toml changes,
# and flux-core's Python bindings on PYTHONPATH when `flux` is on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# flux-core's bindings are compiled for one interpreter; build-flux-core uses this one too.
PYTHON_BIN="$(command -v python3.11 || command -v python3)"

# ensure_venv DIR PYTHON [CONSTRAINTS] [EXTRAS]: a virtualenv at DIR for PYTHON with the
# package and its EXTRAS (default: test) installed (under CONSTRAINTS, a pip constraints
# file, when given). Created once; made again only when pyproject.toml or CONSTRAINTS change.
ensure_venv() {
    local venv="$1" python="$2" constraints="${3:-}" extras="${4:-test}"
    local inputs=(pyproject.toml)
    [ -z "$constraints" ] || inputs+=("$constraints")
    local stamp
    stamp="$venv/.installed-$( (cat "${inputs[@]}"; echo "$extras") | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "==> setting up $venv with $("$python" --version)${constraints:+ under $constraints}" >&2
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -e ".[$extras]" ${constraints:+-c "$constraints"}
        rm -f "$venv"/.installed-*
        touch "$stamp"
    fi
}

# find_python X.Y: an interpreter of Python X.Y, on PATH or installed by pyenv (whose
# shims answer only for the versions it has selected); nothing when there is none.
find_python() {
    local candidate
    for candidate in "$(command -v "python$1" || true)" \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
        if [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
}

# airflow_version VENV: the Airflow version installed there.
airflow_version() {
    "$1/bin/python" -c "from importlib.metadata import version; print(version('apache-airflow'))"
}

VENV="${AIRFLOW_PROVIDER_FLUX_VENV:-$ROOT/.venv}"
# The main virtualenv builds the documentation too.
ensure_venv "$VENV" "$PYTHON_BIN" "" "test,docs"
export PATH="$VENV/bin:$PATH"
if command -v flux >/dev/null 2>&1; then
    FLUX_PYTHONPATH="$(flux config builtin python_path)"
    export PYTHONPATH="$FLUX_PYTHONPATH${PYTHONPATH:+:$PYTHONPATH}"
fi
