//! The config text as a TOML tree with positions.
//!
//! Parsing keeps toml's byte spans for every key, value and array element under its key
//! path, so that any later complaint about `maps.customers.conflict.winner` can name the
//! line and column it was written at. This is also where secrets are refused (before
//! serde sees the tree) and where the tree is cut into sections, each deserialized on its
//! own so that one bad map does not hide the errors of the next.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::error::{ConfigError, Location};

/// Key paths and their positions in one config text.
pub(super) struct Document<'t> {
    file: String,
    text: &'t str,
    line_starts: Vec<usize>,
    /// The span of each key path's value (a table's header for `[a.b]` tables).
    values: HashMap<String, Range<usize>>,
    /// Key and value spans with their paths, to find the entry an error span points into.
    entries: Vec<(Range<usize>, String)>,
}

impl<'t> Document<'t> {
    /// Parses `text`; on syntax errors, all of them.
    pub(super) fn parse(
        file: &str,
        text: &'t str,
    ) -> Result<(Document<'t>, Spanned<DeTable<'t>>), Vec<ConfigError>> {
        let mut document = Document {
            file: file.to_owned(),
            text,
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect(),
            values: HashMap::new(),
            entries: Vec::new(),
        };
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            let mut seen_lines = Vec::new();
            let mut located = Vec::new();
            for error in errors {
                let location = error.span().map(|span| document.location(span.start));
                // Recovery can report a cascade on one line; the first says it best.
                if location.is_some() && seen_lines.contains(&location) {
                    continue;
                }
                seen_lines.push(location);
                located.push(ConfigError {
                    file: file.to_owned(),
                    location,
                    key_path: String::new(),
                    message: format!("invalid TOML: {}", error.message()),
                });
            }
            return Err(located);
        }
        document.index_table(root.get_ref(), "");
        Ok((document, root))
    }

    fn index_table(&mut self, table: &DeTable<'_>, prefix: &str) {
        for (key, value) in table.iter() {
            let path = join(prefix, key.get_ref());
            self.entries.push((key.span(), path.clone()));
            self.index_value(value, path);
        }
    }

    fn index_value(&mut self, value: &Spanned<DeValue<'_>>, path: String) {
        self.entries.push((value.span(), path.clone()));
        match value.get_ref() {
            DeValue::Table(table) => self.index_table(table, &path),
            DeValue::Array(array) => {
                for (index, item) in array.iter().enumerate() {
                    self.index_value(item, format!("{path}[{index}]"));
                }
            }
            _ => {}
        }
        self.values.insert(path, value.span());
    }

    /// The file name errors are reported under.
    pub(super) fn file(&self) -> &str {
        &self.file
    }

    /// The line and column of byte `offset`.
    pub(super) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |before| before.chars().count());
        Location {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }

    /// Where `path` was written: its own value, or failing that its nearest written
    /// ancestor (a defaulted key has no position, its table does).
    pub(super) fn locate(&self, path: &str) -> Option<Location> {
        let mut current = path;
        loop {
            if let Some(span) = self.values.get(current) {
                return Some(self.location(span.start));
            }
            current = parent_path(current)?;
        }
    }

    /// The position of every key path, for the plan's [`Origin`](super::Origin).
    pub(super) fn locations(&self) -> BTreeMap<String, Location> {
        self.values
            .iter()
            .map(|(path, span)| (path.clone(), self.location(span.start)))
            .collect()
    }

    /// An error about `path`, placed where it was written.
    pub(super) fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            location: self.locate(path),
            key_path: path.to_owned(),
            message: message.into(),
        }
    }

    /// A toml/serde error, placed at its span, under the innermost entry holding it.
    fn toml_error(&self, error: &toml::de::Error, fallback_path: &str) -> ConfigError {
        let span = error.span();
        let path = span
            .as_ref()
            .and_then(|span| {
                self.entries
                    .iter()
                    .filter(|(entry, _)| entry.start <= span.start && span.end <= entry.end)
                    .min_by_key(|(entry, path)| (entry.len(), usize::MAX - path.len()))
                    .map(|(_, path)| path.clone())
            })
            .unwrap_or_else(|| fallback_path.to_owned());
        ConfigError {
            file: self.file.clone(),
            location: span
                .map(|span| self.location(span.start))
                .or_else(|| self.locate(fallback_path)),
            key_path: path,
            message: error.message().to_owned(),
        }
    }

    /// Deserializes one section (a table at `path`) with serde, reporting its first
    /// error with position.
    pub(super) fn section<T>(
        &self,
        table: Spanned<DeTable<'t>>,
        path: &str,
    ) -> Result<T, ConfigError>
    where
        T: Deserialize<'t>,
    {
        T::deserialize(Deserializer::from(table)).map_err(|error| self.toml_error(&error, path))
    }
}

/// A section of the file to deserialize: its key (with the key's start, for file order)
/// and its table.
pub(super) struct Section<'t> {
    /// The key as written.
    pub(super) name: String,
    /// Byte offset of the key, to keep file order.
    pub(super) offset: usize,
    /// The table, or `None` when the key does not hold a table (already reported).
    pub(super) table: Option<Spanned<DeTable<'t>>>,
}

/// Removes the table under `key` from `root` and returns its entries as sections, in
/// file order. Entries that are not tables are reported as `expected`.
pub(super) fn take_sections<'t>(
    document: &Document<'t>,
    root: &mut DeTable<'t>,
    key: &str,
    expected: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<Section<'t>>> {
    let value = root.remove(key)?;
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(document.error(key, format!("expected a table of {key} ({expected})")));
        return Some(Vec::new());
    };
    let mut sections: Vec<Section<'t>> = table
        .into_iter()
        .map(|(name, value)| {
            let offset = name.span().start;
            let name = name.into_inner().into_owned();
            let span = value.span();
            let table = match value.into_inner() {
                DeValue::Table(table) => Some(Spanned::new(span, table)),
                other => {
                    errors.push(document.error(
                        &join(key, &name),
                        format!("expected a table ({expected}), found {}", other.type_str()),
                    ));
                    None
                }
            };
            Section {
                name,
                offset,
                table,
            }
        })
        .collect();
    sections.sort_by_key(|section| section.offset);
    Some(sections)
}

/// Refuses secrets written into the file and removes the offending keys, so that serde
/// does not also call them unknown. A secret is a string under a key that looks like one
/// (`password`, `token`, `api_key`, ...; `*_env` keys name a variable and are fine), or
/// a URL with a password in it.
pub(super) fn refuse_secrets(
    document: &Document<'_>,
    table: &mut DeTable<'_>,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table.iter_mut() {
        let path = join(prefix, key.get_ref());
        refuse_secrets_in_value(document, value.get_mut(), &path, errors);
    }
    let secrets: Vec<String> = table
        .iter()
        .filter(|(key, value)| {
            matches!(value.get_ref(), DeValue::String(text) if !text.is_empty())
                && looks_like_secret_key(key.get_ref())
        })
        .map(|(key, _)| key.get_ref().to_string())
        .collect();
    for key in secrets {
        let advice = if prefix.starts_with("sides.") {
            format!(
                "put it in an environment variable and name that variable with \
                 `{key}_env = \"VARIABLE\"`"
            )
        } else {
            "use `*_env` keys naming environment variables where a connection needs one; \
             plugin configs are shown in plans, logs and the admin UI and never hold secrets"
                .to_owned()
        };
        errors.push(document.error(
            &join(prefix, &key),
            format!("looks like a secret; secrets are never read from the config file: {advice}"),
        ));
        table.remove(key.as_str());
    }
}

fn refuse_secrets_in_value(
    document: &Document<'_>,
    value: &mut DeValue<'_>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        DeValue::Table(table) => refuse_secrets(document, table, path, errors),
        DeValue::Array(array) => {
            for (index, item) in array.iter_mut().enumerate() {
                refuse_secrets_in_value(
                    document,
                    item.get_mut(),
                    &format!("{path}[{index}]"),
                    errors,
                );
            }
        }
        DeValue::String(text) if url_has_password(text) => errors.push(document.error(
            path,
            "the URL holds a password; secrets are never read from the config file: remove it \
             from the URL and name an environment variable with `password_env = \"VARIABLE\"`",
        )),
        _ => {}
    }
}

fn looks_like_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.ends_with("_env") || key.ends_with("-env") {
        return false;
    }
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "privatekey",
        "private_key",
        "private-key",
        "credential",
    ];
    WORDS.iter().any(|word| key.contains(word))
        || key
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| part == "pwd" || part == "pass")
}

/// `scheme://user:password@host...`
fn url_has_password(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((user_info, _)) => user_info
            .split_once(':')
            .is_some_and(|(_, password)| !password.is_empty()),
        None => false,
    }
}

/// `prefix.key`, quoting `key` when it is not a bare TOML key.
pub(super) fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// The path one level up (`a.b[2]` -> `a.b` -> `a`), or `None` at the top.
pub(super) fn parent_path(path: &str) -> Option<&str> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut cut = None;
    for (at, c) in path.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '.' | '[' if !in_quotes => cut = Some(at),
            _ => {}
        }
    }
    cut.map(|at| &path[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_and_walk_up() {
        assert_eq!(join("maps", "customers"), "maps.customers");
        assert_eq!(join("maps", "a.b"), "maps.\"a.b\"");
        assert_eq!(
            parent_path("maps.\"a.b\".erp.key[1]"),
            Some("maps.\"a.b\".erp.key")
        );
        assert_eq!(parent_path("maps.\"a.b\""), Some("maps"));
        assert_eq!(parent_path("maps"), None);
    }

    #[test]
    fn secret_detection() {
        for key in [
            "password",
            "db_password",
            "apiToken",
            "api_key",
            "client_secret",
            "pwd",
        ] {
            assert!(looks_like_secret_key(key), "{key}");
        }
        for key in [
            "password_env",
            "path",
            "url",
            "companies",
            "bypass",
            "compass",
        ] {
            assert!(!looks_like_secret_key(key), "{key}");
        }
        assert!(url_has_password("postgres://app:hunter2@db/erp"));
        assert!(!url_has_password("postgres://app@db/erp"));
        assert!(!url_has_password("postgres://db:5432/erp"));
        assert!(!url_has_password("https://example.com/a:b@c"));
    }

    #[test]
    fn locations_count_characters() {
        let (document, _) = Document::parse("f.toml", "a = 1\nb = \"é\"\nc = 2\n").unwrap();
        assert_eq!(document.location(0), Location { line: 1, column: 1 });
        assert_eq!(document.locate("b"), Some(Location { line: 2, column: 5 }));
        assert_eq!(document.locate("c"), Some(Location { line: 3, column: 5 }));
        assert_eq!(
            document.locate("c.missing"),
            Some(Location { line: 3, column: 5 })
        );
        assert_eq!(document.locate("nowhere"), None);
    }
}
