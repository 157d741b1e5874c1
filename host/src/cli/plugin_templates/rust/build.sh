#!/bin/sh
# Builds {{name}}.wasm, the plugin component, from src/lib.rs.
#
# Toolchain: cargo for the wasm32-wasip2 target (`rustup target add wasm32-wasip2`
# once). For that target rustc links a Wasm component itself, so no other tool is
# needed. The component imports WASI interfaces (Rust's standard library uses them);
# dualwrite serves them with a context that grants nothing.
#
# Environment: CARGO (the cargo to run, default `cargo`), CARGO_TARGET_DIR (where cargo
# builds, default ./target).
set -eu
cd "$(dirname "$0")"
target_dir="${CARGO_TARGET_DIR:-target}"
"${CARGO:-cargo}" build --release --locked --target wasm32-wasip2 --target-dir "$target_dir"
cp "$target_dir/wasm32-wasip2/release/{{name_snake}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
