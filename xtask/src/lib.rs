//! Builds the plugins of `plugins/` from source into Wasm components.
//!
//! Used by `tests/build.rs` (so the test command always runs freshly built plugins) and
//! by the `xtask` binary (`cargo xtask plugins`, `demo`, `bench`). The plugins workspace
//! is compiled for `wasm32-unknown-unknown` in release mode by a nested cargo, then each
//! core module is wrapped into a component with `wit-component`, which reads the
//! component type that `wit-bindgen` embedded in the module. The result imports nothing
//! but `dualwrite:table-map/host` (no WASI).
//!
//! Plugins written in other languages (JavaScript, Python, C) are built by
//! [`languages`], which [`build_plugins`] calls after the Rust ones.

pub mod languages;
pub mod web_ui;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The Rust target plugins are compiled for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The target of plugins that import WASI on purpose (the runtime's tests of the
/// granted-nothing WASI context); rustc emits components for it directly.
pub const WASI_TARGET: &str = "wasm32-wasip2";

/// Plugin crates built for [`WASI_TARGET`] instead of [`WASM_TARGET`].
pub const WASI_PLUGINS: &[&str] = &["wasi-probe"];

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

/// Installs the wasm targets through rustup if they are missing. Needed on a fresh
/// machine, where `RUSTUP_AUTO_INSTALL=0` stops cargo from fetching them on its own.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running `rustup target list --installed` (is rustup installed?)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    for target in [WASM_TARGET, WASI_TARGET] {
        if installed.lines().any(|line| line.trim() == target) {
            continue;
        }
        let status = Command::new("rustup")
            .args(["target", "add", target])
            .status()
            .context("running `rustup target add`")?;
        if !status.success() {
            bail!("`rustup target add {target}` failed with {status}");
        }
    }
    Ok(())
}

/// Older builds of plugins, made from a cargo feature of the same crate: (crate,
/// feature, output name). Tests and the demo compare plugin versions with them
/// (`dualwrite replay --against`).
pub const VARIANTS: &[(&str, &str, &str)] =
    &[("customers", "previous-version", "customers_previous")];

/// Compiles every plugin crate of `plugins/` for wasm and writes one component per
/// crate into `out_dir` as `<name>.wasm` (and the core module as `<name>.core.wasm`),
/// plus one per [`VARIANTS`] entry. `target_dir` is the cargo target directory of the
/// nested build; keep it outside `plugins/` so the build's own output does not look
/// like a source change.
pub fn build_plugins(target_dir: &Path, out_dir: &Path) -> Result<Vec<BuiltPlugin>> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut built = Vec::new();
    let mut everything = vec!["--workspace"];
    for krate in WASI_PLUGINS {
        everything.extend(["--exclude", krate]);
    }
    for module in cargo_build(target_dir, WASM_TARGET, &everything)? {
        built.push(componentize(&module, out_dir, None)?);
    }
    for krate in WASI_PLUGINS {
        for component in cargo_build(target_dir, WASI_TARGET, &["--package", krate])? {
            // rustc already emitted a component for this target.
            let name = component
                .file_stem()
                .and_then(|stem| stem.to_str())
                .context("plugin without a file name")?;
            let path = out_dir.join(format!("{name}.wasm"));
            let bytes = std::fs::read(&component)
                .with_context(|| format!("reading {}", component.display()))?;
            write_if_changed(&path, &bytes)?;
            built.push(BuiltPlugin {
                name: name.to_owned(),
                component: path.clone(),
                core_module: path,
            });
        }
    }
    for (krate, feature, name) in VARIANTS {
        // A target directory of its own, so the variant's module never replaces the
        // default build's in cargo's output folder.
        let variant_dir = target_dir.join("variants").join(feature);
        let modules = cargo_build(
            &variant_dir,
            WASM_TARGET,
            &["--package", krate, "--features", feature],
        )?;
        let module = modules
            .iter()
            .find(|module| {
                module.file_stem().and_then(|s| s.to_str()) == Some(&krate.replace('-', "_"))
            })
            .with_context(|| {
                format!("the {krate} build with feature {feature} produced no module")
            })?;
        built.push(componentize(module, out_dir, Some(name))?);
    }
    built.extend(languages::build_language_plugins(
        &target_dir.join("languages"),
        out_dir,
    )?);
    Ok(built)
}

/// Runs cargo for the plugins workspace and returns the `.wasm` modules it produced.
fn cargo_build(target_dir: &Path, target: &str, selection: &[&str]) -> Result<Vec<PathBuf>> {
    let root = repo_root();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(root.join("plugins"))
        .args([
            "build",
            "--release",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", target])
        .args(selection)
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
    Ok(modules)
}

/// Wraps one core module into a component in `out_dir`.
/// `name` overrides the output name (default: the module's file stem).
fn componentize(module: &Path, out_dir: &Path, name: Option<&str>) -> Result<BuiltPlugin> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => module
            .file_stem()
            .and_then(|stem| stem.to_str())
            .context("plugin module without a file name")?
            .to_owned(),
    };
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
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
