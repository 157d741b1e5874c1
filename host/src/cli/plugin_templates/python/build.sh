#!/bin/sh
# Builds {{name}}.wasm, the plugin component, from app.py.
#
# Toolchain: componentize-py (CPython compiled to Wasm, with the module and the WIT
# bindings baked in), from PyPI, pinned by requirements.txt and installed on the first
# build into a virtual environment in ./.venv. It needs Python 3 with the venv module.
# The component imports WASI interfaces (CPython uses them); dualwrite serves them with a
# context that grants nothing.
#
# Environment: COMPONENTIZE_PY names an installed componentize-py executable to use
# instead (then nothing is installed).
set -eu
cd "$(dirname "$0")"
if [ -z "${COMPONENTIZE_PY:-}" ]; then
  if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  fi
  COMPONENTIZE_PY=.venv/bin/componentize-py
fi
# No __pycache__ next to the sources.
PYTHONDONTWRITEBYTECODE=1 "$COMPONENTIZE_PY" -d wit -w map-plugin componentize -p . app -o {{name}}.wasm
echo "built {{name}}.wasm"
