//! The web UI's browser test tools: playwright-core from npm, pinned by
//! `tests/web-ui/package.json` and its lock, installed with `npm ci` under
//! `target/web-ui/` (once per pin; a stamp remembers them). The browser is the
//! system's Chromium (`/usr/bin/chromium`, Debian's `chromium` package), which
//! playwright-core drives without downloading one of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::repo_root;

/// The browser the tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where playwright-core is installed: `<dir>/node_modules/playwright-core`.
pub fn tools_dir() -> PathBuf {
    repo_root().join("target").join("web-ui")
}

/// Installs the pinned playwright-core under [`tools_dir`] unless it is there already.
pub fn ensure_browser_tools() -> Result<()> {
    let pins_dir = repo_root().join("tests").join("web-ui");
    let dir = tools_dir();
    let mut wanted = Vec::new();
    for file in ["package.json", "package-lock.json"] {
        let path = pins_dir.join(file);
        wanted.extend(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    let stamp = dir.join(".dualwrite-pins");
    if std::fs::read(&stamp).is_ok_and(|existing| existing == wanted)
        && dir
            .join("node_modules/playwright-core/package.json")
            .exists()
    {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(pins_dir.join(file), dir.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    let status = Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .status()
        .context("running npm ci for playwright-core (Node.js and npm are needed)")?;
    if !status.success() {
        bail!("npm ci (installing playwright-core) failed with {status}");
    }
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "note: {CHROMIUM} is missing; the web UI's browser tests need it \
             (`apt-get install chromium`)"
        );
    }
    Ok(())
}
