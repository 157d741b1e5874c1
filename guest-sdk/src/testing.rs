//! A native test seam: run a plugin's transform under plain `cargo test`.
//!
//! [`FakeHost`] answers the plugin's host calls from links and rows the test provides,
//! and records log lines. [`run`] configures a plugin and runs a batch through it, the
//! way the engine does, but natively.
//!
//! ```
//! use dualwrite_guest::{testing::FakeHost, Side, Value};
//!
//! let host = FakeHost::new()
//!     .link(Side::Erp, "CustGroups", vec!["10".into()], vec!["GRP-10".into()])
//!     .row(Side::Crm, "accounts", vec!["C1".into()], &[("name", "Contoso".into())]);
//! ```

use std::cell::RefCell;

use crate::{
    Change, ChangeOp, ConfigError, FieldId, FieldValue, Host, HostError, LogLevel, MapPlugin,
    Outcome, PluginError, Side, Value, Write, WriteOp,
};

/// One recorded link: the key of a row on one side and the key of its linked row.
#[derive(Debug, Clone)]
struct Link {
    side: Side,
    entity: String,
    key: Vec<Value>,
    linked_key: Vec<Value>,
}

/// One recorded row for `read_row`.
#[derive(Debug, Clone)]
struct Row {
    side: Side,
    entity: String,
    key: Vec<Value>,
    fields: Vec<(String, Value)>,
}

/// A [`Host`] that answers from recorded links and rows and keeps the log lines.
#[derive(Debug, Default)]
pub struct FakeHost {
    links: Vec<Link>,
    rows: Vec<Row>,
    unavailable: Option<String>,
    logs: RefCell<Vec<(LogLevel, String)>>,
}

impl FakeHost {
    /// A host with no links and no rows.
    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    /// Records that the row of `entity` on `side` with key `key` is linked to the row
    /// with key `linked_key` on the other side. Answers `translate_key(side, entity,
    /// key)`; record the reverse link separately if the plugin translates back.
    pub fn link(
        mut self,
        side: Side,
        entity: &str,
        key: Vec<Value>,
        linked_key: Vec<Value>,
    ) -> FakeHost {
        self.links.push(Link {
            side,
            entity: entity.to_owned(),
            key,
            linked_key,
        });
        self
    }

    /// Records a row of `entity` on `side` that `read_row` can find by `key`.
    pub fn row(
        mut self,
        side: Side,
        entity: &str,
        key: Vec<Value>,
        fields: &[(&str, Value)],
    ) -> FakeHost {
        self.rows.push(Row {
            side,
            entity: entity.to_owned(),
            key,
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        });
        self
    }

    /// Makes every lookup fail with a retryable error, as when a side is offline.
    pub fn unavailable(mut self, message: &str) -> FakeHost {
        self.unavailable = Some(message.to_owned());
        self
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    fn check_available(&self) -> Result<(), HostError> {
        match &self.unavailable {
            Some(message) => Err(HostError {
                message: message.clone(),
                retryable: true,
            }),
            None => Ok(()),
        }
    }
}

impl Host for FakeHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn translate_key(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, HostError> {
        self.check_available()?;
        Ok(self
            .links
            .iter()
            .find(|link| link.side == side && link.entity == entity && link.key == key)
            .map(|link| link.linked_key.clone()))
    }

    fn read_row(
        &self,
        side: Side,
        entity: &str,
        key: &[Value],
        fields: &[&str],
    ) -> Result<Option<Vec<Value>>, HostError> {
        self.check_available()?;
        let Some(row) = self
            .rows
            .iter()
            .find(|row| row.side == side && row.entity == entity && row.key == key)
        else {
            return Ok(None);
        };
        fields
            .iter()
            .map(|wanted| {
                row.fields
                    .iter()
                    .find(|(name, _)| name == wanted)
                    .map(|(_, value)| value.clone())
                    .ok_or_else(|| HostError {
                        message: format!("{entity} has no field {wanted}"),
                        retryable: false,
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Creates a plugin, configures it with `config` and runs `batch` through it against
/// `host`, as the engine would.
pub fn run<P: MapPlugin>(
    config: &str,
    batch: &[Change],
    host: &FakeHost,
) -> Result<Vec<Outcome>, ConfigError> {
    let mut plugin = P::default();
    plugin.configure(config)?;
    Ok(plugin.transform_batch(batch, host))
}

/// A change of a row with `width` declared fields: `values` by field id, every other
/// field null.
pub fn change(
    source: Side,
    op: ChangeOp,
    width: usize,
    values: &[(FieldId, Value)],
    changed: &[FieldId],
) -> Change {
    let mut row = vec![Value::Null; width];
    for (id, value) in values {
        row[*id as usize] = value.clone();
    }
    Change {
        source,
        op,
        row,
        changed: changed.to_vec(),
    }
}

/// `values` with field `id` set to `value` (replacing any value it had).
pub fn with(mut values: Vec<(FieldId, Value)>, id: FieldId, value: Value) -> Vec<(FieldId, Value)> {
    values.retain(|(field, _)| *field != id);
    values.push((id, value));
    values
}

/// Runs one change through plugin `P` configured with `config`; panics if the config
/// is refused (a test's own mistake).
pub fn one<P: MapPlugin>(config: &str, change: Change, host: &FakeHost) -> Outcome {
    let mut outcomes = run::<P>(config, &[change], host).expect("config is valid");
    assert_eq!(outcomes.len(), 1, "one outcome per change");
    outcomes.remove(0)
}

/// The error of a failed outcome; panics on any other outcome.
pub fn the_error(outcome: Outcome) -> PluginError {
    match outcome {
        Outcome::Failed(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A single upsert of `fields`, as an outcome.
pub fn upsert(fields: &[(FieldId, Value)]) -> Outcome {
    Outcome::write(Write {
        op: WriteOp::Upsert,
        fields: fields
            .iter()
            .map(|(field, value)| FieldValue {
                field: *field,
                value: value.clone(),
            })
            .collect(),
    })
}

/// The JSON pointer at which plugin `P` refuses `config`; panics if it accepts it.
pub fn config_path<P: MapPlugin>(config: &str) -> String {
    P::default()
        .configure(config)
        .expect_err("config is refused")
        .path
}
