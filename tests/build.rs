//! Builds every plugin of `plugins/` from source into Wasm components before the tests
//! and benchmarks of this crate compile, and tells them where the files are through the
//! `DUALWRITE_TEST_PLUGINS` environment variable (read with `env!`).

use std::path::PathBuf;

fn main() {
    let root = xtask::repo_root();
    for watched in ["plugins", "guest-sdk", "wit"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let components = out_dir.join("plugins");
    if let Err(error) = xtask::build_plugins(&target_dir.join("wasm-plugins"), &components) {
        panic!(
            "{error:#}\n(run `cargo xtask setup` if the wasm32-unknown-unknown target is missing)"
        );
    }
    println!(
        "cargo::rustc-env=DUALWRITE_TEST_PLUGINS={}",
        components.display()
    );
}
