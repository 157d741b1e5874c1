//! Compiled plugin code cached on disk, so a restart or a hot swap costs milliseconds
//! instead of a Cranelift compile.
//!
//! An entry is keyed by the component's content hash and the engine's compatibility
//! hash (wasmtime version and every setting that affects code), so a new dualwrite
//! version or different limits never load stale code. The entry's own SHA-256 is part
//! of its file name and checked before the code is trusted; entries are written to a
//! temporary file and renamed, so a crash never leaves a half-written entry in place.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::ContentHash;

/// A folder of precompiled components for one engine configuration.
pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

impl CodeCache {
    /// Opens (creating if needed) the cache folder `dir` for `engine`.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> anyhow::Result<CodeCache> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the plugin code cache {}", dir.display()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CodeCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn prefix(&self, hash: &ContentHash) -> String {
        format!("{}-{}-", hash.hex(), self.engine_key)
    }

    /// The cached component for `hash`, if a valid entry exists. A damaged entry is
    /// removed and reported as a miss.
    pub(crate) fn get(&self, engine: &Engine, hash: &ContentHash) -> Option<Component> {
        let prefix = self.prefix(hash);
        let entry = std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| file_name(path).is_some_and(|name| name.starts_with(&prefix)))?;
        let bytes = std::fs::read(&entry).ok()?;
        let expected = file_name(&entry)?
            .strip_prefix(&prefix)?
            .strip_suffix(".cwasm")?
            .to_owned();
        if hex::encode(Sha256::digest(&bytes)) != expected {
            tracing::warn!(entry = %entry.display(), "damaged plugin code cache entry removed");
            let _ = std::fs::remove_file(&entry);
            return None;
        }
        deserialize(engine, &bytes)
    }

    /// Stores the compiled form of `component`. Failing to write only costs a future
    /// compile, so errors are logged, not returned.
    pub(crate) fn put(&self, hash: &ContentHash, component: &Component) {
        let result = (|| -> anyhow::Result<()> {
            let bytes = component.serialize()?;
            let name = format!(
                "{}{}.cwasm",
                self.prefix(hash),
                hex::encode(Sha256::digest(&bytes))
            );
            let temporary = self.dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::write(&temporary, &bytes)?;
            std::fs::rename(&temporary, self.dir.join(name))?;
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(dir = %self.dir.display(), "could not cache compiled plugin code: {error:#}");
        }
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> Option<Component> {
    // SAFETY: wasmtime trusts serialized code to be its own output. These bytes were
    // written by `CodeCache::put` in the engine's private cache folder, and their
    // SHA-256 was just checked against the one recorded at write time, so they are the
    // exact bytes wasmtime produced for this engine configuration.
    unsafe { Component::deserialize(engine, bytes) }.ok()
}
