//! Self-test cases a plugin component carries inside itself, so whoever receives the
//! file (an admin dropping it into the plugins folder, `dualwrite plugin check`) can
//! check it does what its author recorded, with no database.
//!
//! The cases sit in a custom section of the component named [`SECTION`], which the
//! component model ignores when running it. Its content is JSON ([`SelfTests`]): for
//! each case the texts of a case folder in the `tests/cases` layout (`changes.jsonl`,
//! `expected.jsonl`, and optionally `config.json`, `links.jsonl`, `rows.jsonl`), so a
//! partner embeds the cases they already replay: `dualwrite plugin embed-tests FILE
//! --case DIR...`. A case passes when replaying its changes through the plugin,
//! configured with its config and answering lookups from its links and rows, gives
//! exactly its expected records (the same comparison as `dualwrite replay --expect`).
//!
//! Sections are read and written by walking the component's top-level sections (an id
//! byte, a LEB128 size, the payload; a custom section's payload starts with its name),
//! which is all the binary format asks for; nothing else in the file is touched.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{
    RecordedLookups, compare, parse_change_set, parse_links, parse_records, parse_rows,
    render_diffs, replay,
};
use crate::plugin::LoadedPlugin;

/// The custom section holding the cases.
pub const SECTION: &str = "dualwrite:self-test";

/// The format version this host reads and writes.
const FORMAT_VERSION: u32 = 1;

/// The content of the section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTests {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The cases, run in order.
    pub cases: Vec<SelfTestCase>,
}

/// One case: the texts of a case folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestCase {
    /// The case's name (its folder's).
    pub name: String,
    /// The plugin config, JSON text (`{}` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The change set, JSON Lines.
    pub changes: String,
    /// Recorded links, JSON Lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<String>,
    /// Recorded rows, JSON Lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<String>,
    /// The expected result records, JSON Lines.
    pub expected: String,
}

impl SelfTestCase {
    /// Reads a case folder (`changes.jsonl` and `expected.jsonl` required).
    pub fn read_dir(dir: &Path) -> anyhow::Result<SelfTestCase> {
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{}: not a case folder name", dir.display()))?
            .to_owned();
        let read = |file: &str| -> anyhow::Result<Option<String>> {
            let path = dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
            }
        };
        let required = |file: &str| -> anyhow::Result<String> {
            read(file)?.with_context(|| {
                format!(
                    "case {}: {file} is missing (a case needs changes.jsonl and expected.jsonl)",
                    dir.display()
                )
            })
        };
        Ok(SelfTestCase {
            name,
            config: read("config.json")?,
            changes: required("changes.jsonl")?,
            links: read("links.jsonl")?,
            rows: read("rows.jsonl")?,
            expected: required("expected.jsonl")?,
        })
    }
}

/// The self-tests `bytes` (a component) carries, if any. A section that does not read
/// is an error naming the problem.
pub fn embedded(bytes: &[u8]) -> anyhow::Result<Option<SelfTests>> {
    let Some(data) = sections(bytes)?
        .into_iter()
        .find_map(|section| section.custom_named(bytes, SECTION))
    else {
        return Ok(None);
    };
    let tests: SelfTests = serde_json::from_slice(data)
        .with_context(|| format!("the {SECTION} section is not valid self-test JSON"))?;
    if tests.version != FORMAT_VERSION {
        bail!(
            "the {SECTION} section has format version {}, this host reads {FORMAT_VERSION}",
            tests.version
        );
    }
    Ok(Some(tests))
}

/// `bytes` with `tests` as its self-test section (replacing one it had).
pub fn embed(bytes: &[u8], tests: &SelfTests) -> anyhow::Result<Vec<u8>> {
    let found = sections(bytes)?;
    let mut out = bytes[..HEADER_LEN].to_vec();
    for section in &found {
        if section.custom_named(bytes, SECTION).is_none() {
            out.extend_from_slice(&bytes[section.start..section.end]);
        }
    }
    let json = serde_json::to_vec(tests)?;
    let mut payload = Vec::new();
    leb128(&mut payload, SECTION.len() as u64);
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(&json);
    out.push(0);
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Runs every case through `plugin`; returns how many passed, or the first failing
/// case's name and differences.
pub fn run(plugin: &LoadedPlugin, tests: &SelfTests) -> Result<usize, String> {
    for case in &tests.cases {
        run_case(plugin, case).map_err(|error| format!("case {}: {error:#}", case.name))?;
    }
    Ok(tests.cases.len())
}

/// Runs the cases `bytes` (the component `plugin` was loaded from) carries, if any;
/// the error names the failing case or the section that does not read. For the engine's
/// checks of a plugin file (hot swap, start).
pub fn check_embedded(plugin: &LoadedPlugin, bytes: &[u8]) -> Result<(), String> {
    match embedded(bytes) {
        Ok(None) => Ok(()),
        Ok(Some(tests)) => run(plugin, &tests).map(drop),
        Err(error) => Err(format!("{error:#}")),
    }
    .map_err(|reason| format!("self-test: {reason}"))
}

fn run_case(plugin: &LoadedPlugin, case: &SelfTestCase) -> anyhow::Result<()> {
    let file = |name: &str| format!("{}/{name}", case.name);
    let links = match &case.links {
        Some(text) => parse_links(&file("links.jsonl"), text)?,
        None => Vec::new(),
    };
    let rows = match &case.rows {
        Some(text) => parse_rows(&file("rows.jsonl"), text)?,
        None => Vec::new(),
    };
    let changes = parse_change_set(&file("changes.jsonl"), &case.changes)?;
    let expected = parse_records(&file("expected.jsonl"), &case.expected)?;
    let mut runner = plugin.start(
        case.config.as_deref().unwrap_or("{}"),
        Arc::new(RecordedLookups::new(links, rows)),
    )?;
    let actual = replay(&mut runner, &changes, 100)?;
    let diffs = compare(&expected, &actual);
    if !diffs.is_empty() {
        bail!(
            "{} of {} changes differ from the expected records:\n{}",
            diffs.len(),
            expected.len().max(actual.len()),
            render_diffs(&diffs, "expected", "actual")
        );
    }
    Ok(())
}

/// The preamble of a component or module: magic and version/layer.
const HEADER_LEN: usize = 8;

/// A top-level section: its id and where it lies (header included).
struct Section {
    id: u8,
    start: usize,
    payload: usize,
    end: usize,
}

impl Section {
    /// The data of this section when it is the custom section `name`.
    fn custom_named<'a>(&self, bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
        if self.id != 0 {
            return None;
        }
        let mut at = self.payload;
        let length = read_leb128(bytes, &mut at, self.end).ok()? as usize;
        let name_end = at.checked_add(length).filter(|end| *end <= self.end)?;
        (&bytes[at..name_end] == name.as_bytes()).then(|| &bytes[name_end..self.end])
    }
}

fn sections(bytes: &[u8]) -> anyhow::Result<Vec<Section>> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != b"\0asm" {
        bail!("not a WebAssembly file");
    }
    let mut found = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let size = read_leb128(bytes, &mut at, bytes.len())? as usize;
        let end = at
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .with_context(|| {
                format!("the section at byte {start} runs past the end of the file")
            })?;
        found.push(Section {
            id,
            start,
            payload: at,
            end,
        });
        at = end;
    }
    Ok(found)
}

fn read_leb128(bytes: &[u8], at: &mut usize, end: usize) -> anyhow::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = bytes.get(*at).filter(|_| *at < end) else {
            bail!("a section size runs past the end of the file");
        };
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("a section size is longer than 64 bits")
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SelfTests {
        SelfTests {
            version: FORMAT_VERSION,
            cases: vec![SelfTestCase {
                name: "one".to_owned(),
                config: Some("{}".to_owned()),
                changes: "{\"dualwrite\": \"change-set\", \"version\": 1}\n".to_owned(),
                links: None,
                rows: None,
                expected: String::new(),
            }],
        }
    }

    /// A tiny valid component: the preamble and one custom section.
    fn component() -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
        bytes.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
        bytes
    }

    #[test]
    fn embedded_cases_read_back_and_replace_earlier_ones() {
        let plain = component();
        assert_eq!(embedded(&plain).expect("reads"), None);
        let with = embed(&plain, &sample()).expect("embed");
        assert!(with.starts_with(&plain), "the original sections are kept");
        assert_eq!(embedded(&with).expect("reads"), Some(sample()));
        let mut other = sample();
        other.cases[0].name = "two".to_owned();
        let replaced = embed(&with, &other).expect("embed again");
        assert_eq!(embedded(&replaced).expect("reads"), Some(other));
        assert_eq!(
            sections(&replaced).expect("sections").len(),
            2,
            "one self-test section, not two"
        );
    }

    #[test]
    fn damaged_sections_and_json_are_errors_naming_the_problem() {
        let mut cut = component();
        cut.truncate(cut.len() - 2);
        let error = embedded(&cut).expect_err("cut short");
        assert!(format!("{error:#}").contains("past the end"), "{error:#}");
        let mut bad = component();
        let mut payload = Vec::new();
        leb128(&mut payload, SECTION.len() as u64);
        payload.extend_from_slice(SECTION.as_bytes());
        payload.extend_from_slice(b"{\"version\": 1, \"cases\": 3}");
        bad.push(0);
        leb128(&mut bad, payload.len() as u64);
        bad.extend_from_slice(&payload);
        let error = embedded(&bad).expect_err("bad JSON");
        assert!(
            format!("{error:#}").contains("not valid self-test JSON"),
            "{error:#}"
        );
        assert!(
            format!("{:#}", embedded(b"nope").expect_err("not wasm")).contains("not a WebAssembly")
        );
    }

    #[test]
    fn leb128_round_trips() {
        for value in [0u64, 1, 127, 128, 300, 16_384, u32::MAX as u64] {
            let mut out = Vec::new();
            leb128(&mut out, value);
            let mut at = 0;
            assert_eq!(read_leb128(&out, &mut at, out.len()).expect("reads"), value);
            assert_eq!(at, out.len());
        }
    }
}
