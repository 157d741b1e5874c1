//! Validating and compiling a plugin file.
//!
//! A file becomes a [`LoadedPlugin`] only if it is a WebAssembly component (not a core
//! module, not a truncated or foreign file), exports `dualwrite:table-map/plugin` at a
//! supported version, imports nothing but the host interfaces of that version, and
//! type-checks against the host's bindings. Each refusal is a [`LoadError`] that names
//! the file and what is missing or mismatched.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, types::ComponentItem};

use super::bindings::MapPluginPre;
use super::state::PluginState;
use super::{PluginRuntime, runner};
use crate::change::Descriptor;

/// World versions of `dualwrite:table-map` this host runs.
pub const SUPPORTED_WORLD_VERSIONS: &[&str] = &["0.1.0"];

const PACKAGE: &str = "dualwrite:table-map";

/// The SHA-256 of a plugin file's bytes: its identity in caches, logs and rollbacks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

/// Why a plugin file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (missing, unreadable, or outside the plugins folder).
    #[error("{file}: cannot read the plugin file: {message}")]
    Read {
        /// The file as named.
        file: String,
        /// The I/O error.
        message: String,
    },
    /// The file is not WebAssembly at all.
    #[error("{file}: not a WebAssembly file ({detail})")]
    NotWasm {
        /// The file.
        file: String,
        /// What the first bytes look like.
        detail: String,
    },
    /// The file is a core module, not a component.
    #[error(
        "{file}: is a core WebAssembly module, not a component; plugins must be components \
         (wrap the module with `wasm-tools component new` or the `wit-component` crate, or \
         build for a target that emits components)"
    )]
    CoreModule {
        /// The file.
        file: String,
    },
    /// The file is WebAssembly but cannot be decoded or compiled (truncated, damaged).
    #[error("{file}: invalid component: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The component does not implement a world this host supports.
    #[error("{file}: not a dualwrite map plugin this host can run: {message}")]
    WrongWorld {
        /// The file.
        file: String,
        /// What is missing or mismatched.
        message: String,
    },
}

/// A validated, compiled plugin, ready to start runners from. Cheap to clone.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub(super) inner: Arc<LoadedInner>,
}

pub(super) struct LoadedInner {
    pub(super) file: String,
    pub(super) hash: ContentHash,
    pub(super) world_version: String,
    pub(super) pre: MapPluginPre<PluginState>,
    pub(super) limits: super::Limits,
    pub(super) engine: wasmtime::Engine,
}

impl LoadedPlugin {
    /// The file name it was loaded from.
    pub fn file(&self) -> &str {
        &self.inner.file
    }

    /// The SHA-256 of its bytes.
    pub fn hash(&self) -> ContentHash {
        self.inner.hash
    }

    /// The `dualwrite:table-map` version it implements.
    pub fn world_version(&self) -> &str {
        &self.inner.world_version
    }

    /// Instantiates the plugin, configures it with `config` (JSON) and describes it.
    pub fn start(
        &self,
        config: &str,
        lookups: Arc<dyn super::Lookups>,
    ) -> Result<runner::MapPluginRunner, runner::StartError> {
        runner::MapPluginRunner::start(self.clone(), config, lookups)
    }

    /// Starts the plugin with `{}` and no lookups and returns what it describes.
    pub fn describe_default(&self) -> Result<Descriptor, runner::StartError> {
        self.start("{}", Arc::new(super::NoLookups))
            .map(|runner| runner.descriptor().clone())
    }
}

impl PluginRuntime {
    /// Loads the plugin file `name` from the plugins folder `dir`. `name` is resolved
    /// inside `dir` only: absolute paths and `..` that would leave it are refused.
    pub fn load(&self, dir: &cap_std::fs::Dir, name: &str) -> Result<LoadedPlugin, LoadError> {
        let bytes = dir.read(name).map_err(|error| LoadError::Read {
            file: name.to_owned(),
            message: error.to_string(),
        })?;
        self.load_bytes(name, &bytes)
    }

    /// Validates and compiles a plugin from its bytes; `file` names it in messages.
    pub fn load_bytes(&self, file: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        check_header(file, bytes)?;
        let engine = self.engine.engine();
        let hash = ContentHash::of(bytes);
        let remembered = self
            .compiled
            .lock()
            .ok()
            .and_then(|compiled| compiled.get(&hash).cloned());
        let component = match remembered {
            Some(component) => component,
            None => {
                let cached = self
                    .cache
                    .as_ref()
                    .and_then(|cache| cache.get(engine, &hash));
                let component = match cached {
                    Some(component) => component,
                    None => {
                        let component =
                            Component::new(engine, bytes).map_err(|error| LoadError::Invalid {
                                file: file.to_owned(),
                                message: first_line(&error),
                            })?;
                        if let Some(cache) = &self.cache {
                            cache.put(&hash, &component);
                        }
                        component
                    }
                };
                if let Ok(mut compiled) = self.compiled.lock() {
                    compiled.insert(hash, component.clone());
                }
                component
            }
        };
        let world_version = check_world(file, engine, &component)?;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|error| LoadError::WrongWorld {
                    file: file.to_owned(),
                    message: format!("its imports cannot be linked: {}", chain(&error)),
                })?;
        let export_mismatch = |error: wasmtime::Error| LoadError::WrongWorld {
            file: file.to_owned(),
            message: format!(
                "its exports do not match the dualwrite:table-map@{world_version} contract: {}",
                chain(&error)
            ),
        };
        check_export_types(engine, &component, &instance_pre, &world_version)
            .map_err(export_mismatch)?;
        let pre = MapPluginPre::new(instance_pre).map_err(export_mismatch)?;
        Ok(LoadedPlugin {
            inner: Arc::new(LoadedInner {
                file: file.to_owned(),
                hash,
                world_version,
                pre,
                limits: self.limits,
                engine: engine.clone(),
            }),
        })
    }
}

/// Tells components from core modules and non-Wasm files by their preamble.
fn check_header(file: &str, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let detail = if bytes.is_empty() {
            "the file is empty".to_owned()
        } else if bytes.len() < 8 && MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            format!("the file is only {} bytes long", bytes.len())
        } else {
            "it does not start with the \\0asm magic bytes".to_owned()
        };
        return Err(LoadError::NotWasm {
            file: file.to_owned(),
            detail,
        });
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(LoadError::CoreModule {
            file: file.to_owned(),
        }),
        [_, _, 1, 0] => Ok(()),
        _ => Err(LoadError::NotWasm {
            file: file.to_owned(),
            detail: format!("unknown WebAssembly version/layer {:?}", &bytes[4..8]),
        }),
    }
}

/// Checks the component's exports and imports against the supported worlds and returns
/// the world version it implements.
fn check_world(
    file: &str,
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<String, LoadError> {
    let wrong = |message: String| LoadError::WrongWorld {
        file: file.to_owned(),
        message,
    };
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let plugin_prefix = format!("{PACKAGE}/plugin@");
    let Some(version) = exports
        .iter()
        .find_map(|name| name.strip_prefix(&plugin_prefix))
        .map(str::to_owned)
    else {
        let listed = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        };
        return Err(wrong(format!(
            "it does not export {PACKAGE}/plugin (it exports {listed}); a map plugin implements \
             the world {PACKAGE}/map-plugin@{}",
            SUPPORTED_WORLD_VERSIONS.join(" or @")
        )));
    };
    if !SUPPORTED_WORLD_VERSIONS.contains(&version.as_str()) {
        return Err(wrong(format!(
            "it implements {PACKAGE}@{version}, but this dualwrite supports {PACKAGE}@{}",
            SUPPORTED_WORLD_VERSIONS.join(", @")
        )));
    }
    let allowed = [
        format!("{PACKAGE}/host@{version}"),
        format!("{PACKAGE}/types@{version}"),
    ];
    for (name, item) in ty.imports(engine) {
        // WASI is linked with a context that grants nothing (wasi.rs); whether the
        // versions and types match what wasmtime-wasi provides is checked at link time.
        if allowed.iter().any(|allowed| allowed == name) || name.starts_with("wasi:") {
            continue;
        }
        let what = match item.ty {
            ComponentItem::ComponentFunc(_) => "function",
            ComponentItem::ComponentInstance(_) => "interface",
            _ => "item",
        };
        return Err(wrong(format!(
            "it imports the {what} `{name}`, which dualwrite does not provide; plugins may import \
             only {} and wasi:* (granted nothing)",
            allowed.join(" and ")
        )));
    }
    Ok(version)
}

/// Type-checks the plugin interface's functions now, so a component whose signatures
/// differ from the contract is refused at load instead of at its first instantiation
/// (the generated bindings check interface exports only when they are instantiated).
fn check_export_types(
    engine: &wasmtime::Engine,
    component: &Component,
    instance_pre: &wasmtime::component::InstancePre<PluginState>,
    version: &str,
) -> wasmtime::Result<()> {
    use crate::change::{Change, ConfigError, Descriptor, Outcome};
    let instance_type = instance_pre.instance_type();
    let export = format!("{PACKAGE}/plugin@{version}");
    let ty = component.component_type();
    let Some((_, ComponentItem::ComponentInstance(instance))) = ty
        .exports(engine)
        .find(|(name, _)| *name == export)
        .map(|(name, item)| (name, item.ty))
    else {
        wasmtime::bail!("`{export}` is not an exported interface");
    };
    let mut found = 0;
    for (name, item) in instance.exports(engine) {
        let ComponentItem::ComponentFunc(func) = item.ty else {
            continue;
        };
        let checked = match name {
            "configure" => func.typecheck::<(&str,), (Result<(), ConfigError>,)>(&instance_type),
            "describe" => func.typecheck::<(), (Descriptor,)>(&instance_type),
            "transform" => func.typecheck::<(&[Change],), (Vec<Outcome>,)>(&instance_type),
            _ => continue,
        };
        checked.map_err(|error| error.context(format!("function `{name}`")))?;
        found += 1;
    }
    if found != 3 {
        wasmtime::bail!("`{export}` must export configure, describe and transform");
    }
    Ok(())
}

fn first_line(error: &wasmtime::Error) -> String {
    chain(error).lines().next().unwrap_or_default().to_owned()
}

fn chain(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}
