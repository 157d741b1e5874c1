//! Builds the plugins of `plugins/` from source into Wasm components.
//!
//! Used by `tests/build.rs` (so the test command always runs freshly built plugins) and
//! by the `xtask` binary (`cargo xtask plugins`, `demo`, `bench`). The plugins workspace
//! is compiled for `wasm32-unknown-unknown` in release mode by a nested cargo, then each
//! core module is wrapped into a component with `wit-component`, which reads the
//! component type that `wit-bindgen` embedded in the module. The result imports nothing
//! but `dualwrite:table-map/host` (no WASI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The Rust target plugins are compiled for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// One plugin turned into a component.
#[derive(Debug, Clone)]
pub struct BuiltPlugin {
    /// The crate name with `-` replaced by `_` (the cdylib's file stem).
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// The core module the component was made from (kept for tests of bad input).
    pub core_module: PathBuf,
}

/// The repository root (the parent of this crate's folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Installs the wasm target through rustup if it is missing. Needed on a fresh machine,
/// where `RUSTUP_AUTO_INSTALL=0` stops cargo from fetching it on its own.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running `rustup target list --installed` (is rustup installed?)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running `rustup target add`")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed with {status}");
    }
    Ok(())
}

/// Compiles every plugin crate of `plugins/` for wasm and writes one component per
/// crate into `out_dir` as `<name>.wasm` (and the core module as `<name>.core.wasm`).
/// `target_dir` is the cargo target directory of the nested build; keep it outside
/// `plugins/` so the build's own output does not look like a source change.
pub fn build_plugins(target_dir: &Path, out_dir: &Path) -> Result<Vec<BuiltPlugin>> {
    let root = repo_root();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(root.join("plugins"))
        .args(["build", "--release", "--locked", "--message-format=json-render-diagnostics"])
        .args(["--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Inside a build script or `cargo clippy`, these belong to the outer build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cargo.env_remove(var);
    }
    let output = cargo
        .output()
        .context("running cargo for the plugins workspace")?;
    if !output.status.success() {
        bail!(
            "building the plugins failed ({}); if the wasm target is missing, run `cargo xtask setup`",
            output.status
        );
    }
    let mut modules = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "cdylib"));
        if !is_cdylib {
            continue;
        }
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(path) = file.as_str().filter(|path| path.ends_with(".wasm")) {
                modules.push(PathBuf::from(path));
            }
        }
    }
    if modules.is_empty() {
        bail!("the plugins build produced no .wasm files");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    modules
        .iter()
        .map(|module| componentize(module, out_dir))
        .collect()
}

/// Wraps one core module into a component in `out_dir`.
fn componentize(module: &Path, out_dir: &Path) -> Result<BuiltPlugin> {
    let name = module
        .file_stem()
        .and_then(|stem| stem.to_str())
        .context("plugin module without a file name")?
        .to_owned();
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .with_context(|| format!("reading the component type embedded in {name}"))?
        .validate(true)
        .encode()
        .with_context(|| format!("encoding {name} as a component"))?;
    let component_path = out_dir.join(format!("{name}.wasm"));
    let core_path = out_dir.join(format!("{name}.core.wasm"));
    write_if_changed(&component_path, &component)?;
    write_if_changed(&core_path, &bytes)?;
    Ok(BuiltPlugin {
        name,
        component: component_path,
        core_module: core_path,
    })
}

/// Writes `bytes` unless the file already holds them, so unchanged plugins keep their
/// modification time (and compiled-code cache entries stay warm).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
