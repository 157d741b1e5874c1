//! What a plugin can ask of the engine.
//!
//! Inside the Wasm component these calls go to the host imports of `dualwrite:table-map/host`;
//! in native tests they go to a [`crate::testing::FakeHost`].

use crate::{HostError, LogLevel, Side, Value};

/// The engine's services available to a plugin: logging, key translation through links,
/// and row reads for lookups. Nothing else.
pub trait Host {
    /// Writes a line to the engine's log, attributed to the map.
    fn log(&self, level: LogLevel, message: &str);

    /// Translates the key of a row of `entity` on `side` to the key of the row linked to
    /// it on the other side; `None` when it is not linked (yet).
    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError>;

    /// Reads `fields` of the row of `entity` on `side` with key `key`; `None` when no
    /// such row exists.
    fn read_row(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
        fields: &[&str],
    ) -> Result<Option<Vec<Value>>, HostError>;
}
