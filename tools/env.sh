# Sourced by tools/test and tools/demo: make .venv (or $STREAM_EXPORT_VENV) with the package and its test
# extra installed, redoing the install whenever pyproject.toml changed.
VENV="${STREAM_EXPORT_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e '.[test]' >&2
    touch "$VENV/.installed"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
