//! Watching the plugins folder for plugin files that are dropped in or rewritten.
//!
//! [`PluginFolderWatcher`] turns the operating system's file events (inotify on Linux,
//! through the `notify` crate) into file names that are ready to look at: a name is
//! reported once no event has touched it for the settle time, so a file copied in
//! over several writes is looked at once, after the copy. Only `*.wasm` files directly
//! in the folder count; hidden files (editors' and copy tools' temporary files) and
//! removals do not: a map whose file is removed keeps running the version it loaded.
//!
//! The watcher only says which names changed. What to do with a changed file
//! (validate, dry-run, swap in at a batch boundary, or refuse) is `sync/hot_swap.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};

/// How long a file must be left alone before it is looked at.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(400);

/// Reports plugin files of one folder that changed; see the module doc.
pub struct PluginFolderWatcher {
    folder: PathBuf,
    settle: Duration,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    /// Each changed name with the time of its latest event.
    pending: BTreeMap<String, Instant>,
    /// Kept alive: dropping it stops the watch.
    _watcher: notify::RecommendedWatcher,
}

impl PluginFolderWatcher {
    /// Starts watching `folder` (not its subfolders).
    pub fn start(folder: &Path, settle: Duration) -> anyhow::Result<PluginFolderWatcher> {
        let folder = folder
            .canonicalize()
            .with_context(|| format!("opening the plugins folder {}", folder.display()))?;
        let (sender, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only when the watcher is being dropped.
            let _ = sender.send(event);
        })
        .context("starting the plugins folder watch")?;
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching the plugins folder {}", folder.display()))?;
        Ok(PluginFolderWatcher {
            folder,
            settle,
            events,
            pending: BTreeMap::new(),
            _watcher: watcher,
        })
    }

    /// The folder watched.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Takes in the events that arrived and returns the names (file names inside the
    /// folder) that changed and have settled, each once. Never blocks.
    pub fn ready(&mut self) -> Vec<String> {
        let now = Instant::now();
        while let Ok(event) = self.events.try_recv() {
            match event {
                Ok(event) => {
                    if !counts(&event.kind) {
                        continue;
                    }
                    for path in &event.paths {
                        if let Some(name) = self.plugin_file_name(path) {
                            self.pending.insert(name, now);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, folder = %self.folder.display(), "plugins folder watch");
                }
            }
        }
        let settled: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, last)| now.duration_since(**last) >= self.settle)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &settled {
            self.pending.remove(name);
        }
        settled
    }

    /// `path`'s name when it is a plugin file directly in the folder.
    fn plugin_file_name(&self, path: &Path) -> Option<String> {
        if path.parent()? != self.folder {
            return None;
        }
        let name = path.file_name()?.to_str()?;
        (name.ends_with(".wasm") && !name.starts_with('.')).then(|| name.to_owned())
    }
}

/// Whether an event of `kind` may have changed a file's content: created, written,
/// renamed into place, closed after writing. Reads and removals do not.
fn counts(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) => true,
        EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {
            true
        }
        EventKind::Access(_) | EventKind::Remove(_) | EventKind::Other => false,
        EventKind::Any => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_ready(watcher: &mut PluginFolderWatcher) -> Vec<String> {
        let started = Instant::now();
        loop {
            let ready = watcher.ready();
            if !ready.is_empty() || started.elapsed() > Duration::from_secs(10) {
                return ready;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_written_file_is_reported_once_after_it_settles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watcher =
            PluginFolderWatcher::start(dir.path(), Duration::from_millis(100)).expect("watch");
        std::fs::write(dir.path().join("map.wasm"), b"first part").expect("write");
        std::fs::write(dir.path().join("map.wasm"), b"first part, then the rest").expect("write");
        assert_eq!(wait_ready(&mut watcher), vec!["map.wasm".to_owned()]);
        std::thread::sleep(Duration::from_millis(200));
        assert!(watcher.ready().is_empty(), "reported once");
    }

    #[test]
    fn hidden_files_other_files_removals_and_subfolders_are_not_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("old.wasm"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let mut watcher =
            PluginFolderWatcher::start(dir.path(), Duration::from_millis(50)).expect("watch");
        std::fs::write(dir.path().join(".map.wasm.tmp"), b"x").expect("write");
        std::fs::write(dir.path().join(".hidden.wasm"), b"x").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        std::fs::write(dir.path().join("sub").join("inner.wasm"), b"x").expect("write");
        std::fs::remove_file(dir.path().join("old.wasm")).expect("remove");
        // A rename into place is reported under the new name.
        std::fs::rename(
            dir.path().join(".map.wasm.tmp"),
            dir.path().join("map.wasm"),
        )
        .expect("rename");
        assert_eq!(wait_ready(&mut watcher), vec!["map.wasm".to_owned()]);
        std::thread::sleep(Duration::from_millis(150));
        assert!(watcher.ready().is_empty());
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let error = PluginFolderWatcher::start(&missing, DEFAULT_SETTLE)
            .err()
            .expect("refused");
        assert!(format!("{error:#}").contains("nope"), "{error:#}");
    }
}
