#!/bin/sh
# Builds {{name}}.wasm, the plugin component, from plugin.js.
#
# Toolchain: componentize-qjs (QuickJS compiled to Wasm, with the module and the WIT
# bindings baked in), from npm, pinned by package.json and package-lock.json and
# installed by `npm ci` into ./node_modules on the first build. It needs Node.js and npm.
# `--sync`: dualwrite calls plugins synchronously. `--stub-wasi`: the WASI imports
# QuickJS would have become traps, so the component imports nothing but the dualwrite
# host interface.
#
# Environment: COMPONENTIZE_QJS names an installed componentize-qjs executable to use
# instead (then nothing is installed).
set -eu
cd "$(dirname "$0")"
if [ -z "${COMPONENTIZE_QJS:-}" ]; then
  if [ ! -x node_modules/.bin/componentize-qjs ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  COMPONENTIZE_QJS=node_modules/.bin/componentize-qjs
fi
"$COMPONENTIZE_QJS" --wit wit --world map-plugin --js plugin.js --sync --stub-wasi -o {{name}}.wasm
echo "built {{name}}.wasm"
