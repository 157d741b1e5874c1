//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `setup`: install the wasm targets the plugins are built for, the pinned tools of
//!   the plugins in other languages (`xtask::languages`) and of the web UI's browser
//!   tests (`xtask::web_ui`);
//! - `plugins`: build every plugin of `plugins/` into a component under `target/plugins/`;
//! - `demo`: build the plugins and the engine and run the demo;
//! - `test`: setup, then every test: the workspace's, and the plugins' native tests;
//! - `bench`: setup, then the benchmarks.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use xtask::{build_plugins, ensure_wasm_target, repo_root};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        // `cargo xtask demo -- --customers 5000`: the `--` only separates cargo's options.
        Some((task, rest)) if rest.first().is_some_and(|arg| arg == "--") => {
            (task.as_str(), &rest[1..])
        }
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "setup" => setup(),
        "plugins" => plugins().map(|_| ()),
        "demo" => demo(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        _ => {
            eprintln!("usage: cargo xtask <setup|plugins|demo|test|bench> [args...]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask {task}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn setup() -> Result<()> {
    ensure_wasm_target()?;
    xtask::languages::ensure_language_tools(&repo_root().join("target/wasm-plugins/languages"))?;
    xtask::web_ui::ensure_browser_tools()
}

fn plugins() -> Result<std::path::PathBuf> {
    ensure_wasm_target()?;
    let target = repo_root().join("target");
    let out = target.join("plugins");
    let built = build_plugins(&target.join("wasm-plugins"), &out)?;
    for plugin in &built {
        println!("built {}", plugin.component.display());
    }
    Ok(out)
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(repo_root());
    command
}

fn run(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// The demo: builds the plugins and the engine, then runs `dualwrite demo` (seeded
/// ERP and CRM databases, initial sync, live sync both ways until Ctrl-C).
fn demo(args: &[String]) -> Result<()> {
    let plugins_dir = plugins()?;
    let mut command = cargo();
    command
        .args([
            "run",
            "--release",
            "--locked",
            "--quiet",
            "--package",
            "dualwrite",
            "--",
        ])
        .arg("demo")
        .arg("--plugins")
        .arg(&plugins_dir)
        .args(args);
    run(command)
}

fn test(args: &[String]) -> Result<()> {
    ensure_wasm_target()?;
    // The web UI's browser tests (tests/tests/web_ui.rs) need playwright-core.
    xtask::web_ui::ensure_browser_tools()?;
    let mut workspace = cargo();
    workspace
        .args(["test", "--workspace", "--locked"])
        .args(args);
    run(workspace)?;
    let mut plugin_tests = cargo();
    plugin_tests.args([
        "test",
        "--locked",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--workspace",
    ]);
    run(plugin_tests)
}

fn bench(args: &[String]) -> Result<()> {
    ensure_wasm_target()?;
    let mut command = cargo();
    command
        .args(["bench", "--locked", "--package", "dualwrite-tests"])
        .args(args);
    run(command)
}
