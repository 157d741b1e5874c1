//! Located configuration errors.

use std::fmt;

/// A line and column in the config file, both counted from 1 (the column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, in characters.
    pub column: u32,
}

/// One thing wrong with a configuration: where it is and what is wrong.
///
/// Displays as `file:line:column: key.path: message`; the position is left out when the
/// error is not tied to a place in the file (an unreadable file, a plan built in code) and
/// the key path when it concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file as named by the caller.
    pub file: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// The dotted key path of the offending entry (`maps.customers.conflict.winner`,
    /// `maps.customers.erp.key[1]`); empty for the whole file.
    pub key_path: String,
    /// What is wrong, and where it helps, how to fix it.
    pub message: String,
}

impl ConfigError {
    /// The line, when known.
    pub fn line(&self) -> Option<u32> {
        self.location.map(|location| location.line)
    }

    /// The column, when known.
    pub fn column(&self) -> Option<u32> {
        self.location.map(|location| location.column)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(Location { line, column }) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything wrong with a configuration, in file order; never empty.
///
/// Validation goes on past the first problem so that one run shows them all. Displays as
/// one [`ConfigError`] per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps `errors`, sorted by position (errors without one first, then by line and
    /// column, keeping the order of equal positions). `None` when `errors` is empty.
    pub fn new(mut errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by_key(|error| error.location);
        errors.dedup();
        Some(ConfigErrors { errors })
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// The number of errors (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
