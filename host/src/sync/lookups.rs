//! The engine's answers to plugin lookups: key translation through the state store's
//! links, and row reads on the sides through read-only connections of their own (the
//! engine's writers are busy applying batches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::apply::ApplyBatch;
use crate::change::{HostError, Side, Value};
use crate::plugin::Lookups;
use crate::state::StateStore;

/// Where rows of an entity live: its side's reader and its key columns.
pub(crate) struct EntityLocation {
    pub(crate) reader: Arc<Mutex<Box<dyn ApplyBatch>>>,
    pub(crate) key_columns: Vec<String>,
}

/// Lookups over the engine's links and sides.
pub(crate) struct EngineLookups {
    pub(crate) store: Arc<dyn StateStore>,
    /// (role, entity) to where it lives.
    pub(crate) entities: HashMap<(Side, String), EntityLocation>,
}

impl Lookups for EngineLookups {
    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        self.store
            .translate_key(side, entity, key)
            .map_err(|error| HostError {
                message: format!("translating a key of {entity}: {error}"),
                retryable: true,
            })
    }

    fn read_row(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
        fields: &[String],
    ) -> Result<Option<Vec<Value>>, HostError> {
        let Some(location) = self.entities.get(&(side, entity.to_owned())) else {
            return Err(HostError {
                message: format!("no map covers {entity} on the {side} side"),
                retryable: false,
            });
        };
        if key.len() != location.key_columns.len() {
            return Err(HostError {
                message: format!(
                    "{entity} is keyed by {} column(s) ({}), the lookup gave {}",
                    location.key_columns.len(),
                    location.key_columns.join(", "),
                    key.len()
                ),
                retryable: false,
            });
        }
        let key_image = super::process::key_image(&location.key_columns, key);
        let mut reader = location.reader.lock().map_err(|_| HostError {
            message: "the side's reader is unusable after a failure".to_owned(),
            retryable: true,
        })?;
        let row = reader
            .read_row(entity, &key_image)
            .map_err(|error| HostError {
                message: error.to_string(),
                retryable: error.is_unavailable(),
            })?;
        let Some(row) = row else {
            return Ok(None);
        };
        fields
            .iter()
            .map(|name| {
                row.get(name).cloned().ok_or_else(|| HostError {
                    message: format!("{entity} has no column {name}"),
                    retryable: false,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
