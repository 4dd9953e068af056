#!/usr/bin/env bash
# Install everything wskit's tests need, then run every check and every test.
#
#   bash scripts/test.sh [PYTEST_ARGS...]
#
# Works from a fresh clone on a fresh Debian 12 machine (as root it installs the Debian
# packages it needs) and is idempotent: a second run only re-checks and re-tests. Steps:
#   1. Debian packages: chromium + chromium-driver (browser tests), python3-venv, gcc (wsaccel)
#   2. .venv with Python >= 3.10: pip install -e '.[test]'
#   3. Autobahn|Testsuite (wstest) in .autobahn-venv, via the shared conformance install.sh
#   4. static checks: ruff check, ruff format --check, mypy (strict, from pyproject.toml)
#   5. the core, asyncio, CLI and API suites on the other supported Pythons (pyenv; .venv-3.X)
#   6. the whole suite in pure-Python mode (WSKIT_NO_EXTENSIONS=1, Autobahn aside), then with
#      the compiled hot path, Autobahn and browser tests included: its summary is the last line
#
# Environment:
#   WSKIT_QUICK=1           skip the Autobahn tests (-m "not autobahn"), their install and step 5
#   WSKIT_AUTOBAHN_CASES    Autobahn case patterns (default "*": all 517 cases)
#   WSKIT_CONFORMANCE_DIR   shared conformance scripts (default: ../shared/conformance)
#   AUTOBAHN_VENV           wstest's virtualenv (default: .autobahn-venv)
# Arguments go to the final pytest run: bash scripts/test.sh -x tests/core
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK="${WSKIT_QUICK:-0}"
CONFORMANCE="${WSKIT_CONFORMANCE_DIR:-$ROOT/../shared/conformance}"
AUTOBAHN_VENV="${AUTOBAHN_VENV:-$ROOT/.autobahn-venv}"
case "$AUTOBAHN_VENV" in /*) ;; *) AUTOBAHN_VENV="$ROOT/$AUTOBAHN_VENV" ;; esac
OTHER_PYTHONS=(3.10 3.12 3.13) # supported besides the one .venv runs (pyproject: >=3.10)
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*"; }
note() { printf 'test.sh: %s\n' "$*" >&2; }
die() {
    note "ERROR: $*"
    exit 1
}

# python_ok PYTHON -- a Python >= 3.10 that runs.
python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

# pyenv_python X.Y -- newest pyenv-installed CPython X.Y (pyenv's shims are not used: they
# only work for the versions pyenv has selected).
pyenv_python() {
    local version="$1" root candidate
    for root in "${PYENV_ROOT:-}" "$(pyenv root 2>/dev/null || true)" "$HOME/.pyenv"; do
        if [ -z "$root" ] || [ ! -d "$root/versions" ]; then continue; fi
        candidate="$(find "$root/versions" -maxdepth 3 -path "*/versions/$version.*/bin/python$version" \
            2>/dev/null | sort -V | tail -n 1)"
        if [ -n "$candidate" ] && "$candidate" -c '' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# The interpreter for .venv: python3 if it is recent enough, else a 3.11.
pick_python() {
    local candidate
    for candidate in python3 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    pyenv_python 3.11
}

# make_venv DIR PYTHON -- create the virtualenv unless one of PYTHON's X.Y already works there.
make_venv() {
    local dir="$1" python="$2" want
    want="$("$python" -c 'import sys; print(sys.version_info[:2])')"
    if [ -x "$dir/bin/python" ] &&
        [ "$("$dir/bin/python" -c 'import sys; print(sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if [ -e "$dir" ] && [ ! -f "$dir/pyvenv.cfg" ]; then
        die "$dir exists and is not a virtualenv; move it away"
    fi
    note "creating $dir with $("$python" --version 2>&1) ($python)"
    "$python" -m venv --clear "$dir"
}

# --- 1. Debian packages ---------------------------------------------------------------------
step "1/6 system packages"
PYTHON="$(pick_python || true)"
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
# Debian splits venv/ensurepip out of python3; wsaccel (faster wstest) needs a C compiler.
if [ -z "$PYTHON" ] || { [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; }; then
    packages+=(python3 python3-venv)
fi
# gcc builds wskit's compiled hot path (and wsaccel, a faster wstest).
if ! command -v gcc >/dev/null 2>&1; then packages+=(gcc); fi
if [ "${#packages[@]}" -eq 0 ]; then
    echo "all present"
elif [ "$(id -u)" = 0 ]; then
    echo "installing: ${packages[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
else
    note "WARNING: missing Debian packages: ${packages[*]} (not root, so not installed)."
    note "         Install them with: sudo apt-get install -y ${packages[*]}"
    note "         Without chromium/chromium-driver the browser tests fail."
fi

# --- 2. the main virtualenv -----------------------------------------------------------------
step "2/6 .venv"
PYTHON="${PYTHON:-$(pick_python || true)}"
[ -n "$PYTHON" ] || die "no Python >= 3.10 found (python3, python3.11, pyenv 3.11)"
make_venv .venv "$PYTHON"
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python --version

# --- 3. Autobahn|Testsuite ------------------------------------------------------------------
step "3/6 Autobahn|Testsuite"
if [ "$QUICK" = 1 ]; then
    echo "skipped (WSKIT_QUICK=1: the Autobahn tests are deselected)"
else
    [ -f "$CONFORMANCE/install.sh" ] ||
        die "no conformance scripts in $CONFORMANCE (set WSKIT_CONFORMANCE_DIR)"
    CONFORMANCE="$(cd "$CONFORMANCE" && pwd)"
    AUTOBAHN_VENV="$AUTOBAHN_VENV" bash "$CONFORMANCE/install.sh"
fi
# The Autobahn tests read both.
export WSKIT_CONFORMANCE_DIR="$CONFORMANCE" AUTOBAHN_VENV

# --- 4. static checks -----------------------------------------------------------------------
step "4/6 ruff, mypy"
lint_paths=()
for dir in src tests compliance examples benchmarks docs; do
    if [ -d "$dir" ]; then lint_paths+=("$dir"); fi
done
.venv/bin/ruff check "${lint_paths[@]}"
.venv/bin/ruff format --check "${lint_paths[@]}"
.venv/bin/mypy

# --- 5. the core on the other supported Pythons ---------------------------------------------
step "5/6 core, asyncio, threads and trio suites on Python ${OTHER_PYTHONS[*]}"
if [ "$QUICK" = 1 ]; then
    echo "skipped (WSKIT_QUICK=1)"
elif [ ! -d tests/core ]; then
    echo "skipped (no tests/core yet)"
else
    for version in "${OTHER_PYTHONS[@]}"; do
        if ! python="$(pyenv_python "$version")"; then
            echo "Python $version: not installed (pyenv install $version); skipped"
            continue
        fi
        make_venv ".venv-$version" "$python"
        # What these suites need (same bounds as the "test" extra): the core checks its bytes
        # against websockets' and wsproto's sans-I/O layers, and permessage-deflate against
        # zlib-ng; the asyncio and threads tests use trustme, the threads tests gevent and
        # eventlet, the trio tests trio; the public-API test imports every module, uvicorn's
        # engine included.
        ".venv-$version/bin/python" -m pip install -q -e . 'pytest>=8' 'pytest-timeout>=2.3' \
            'hypothesis>=6.100' 'websockets>=14' 'wsproto>=1.2' 'trustme>=1.1' 'zlib-ng>=0.5' \
            'gevent>=24.2' 'eventlet>=0.36' 'uvicorn>=0.30' 'trio>=0.25' 'trio-websocket>=0.12'
        echo "Python $version:"
        # The core, and the front ends whose sockets and transports differ between versions
        # (the browser tests run once, in the main run).
        ".venv-$version/bin/python" -m pytest -q -p no:cacheprovider -m "not browser" \
            tests/core tests/asyncio tests/sync tests/trio tests/test_cli.py \
            tests/test_public_api.py
    done
fi

# --- 6. everything --------------------------------------------------------------------------
step "6/6 pytest: pure-Python mode (WSKIT_NO_EXTENSIONS=1), then compiled with Autobahn"
implementation="$(.venv/bin/python -c 'import wskit.core as c; print(c.IMPLEMENTATION)')"
if [ "$implementation" = compiled ]; then
    echo "compiled hot path built: the Cython core and wskit.core._speedups"
else
    die "the compiled hot path was not built (IMPLEMENTATION=$implementation: is gcc installed?)"
fi
# Every test but Autobahn in pure-Python mode; Autobahn runs against the compiled build below.
WSKIT_NO_EXTENSIONS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m "not autobahn" "$@"
pytest_args=(-q)
if [ "$QUICK" = 1 ]; then pytest_args+=(-m "not autobahn"); fi
exec .venv/bin/python -m pytest "${pytest_args[@]}" "$@"
