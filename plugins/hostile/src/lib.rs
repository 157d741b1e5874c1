//! A **test-only** map plugin that misbehaves on demand.
//!
//! The engine runs every map's logic as a sandboxed Wasm component and promises that a
//! misbehaving plugin cannot hurt it: a trap, a deadline or a resource limit hit while a
//! batch is transformed is narrowed down to the change that caused it, which gets a
//! `plugin-trapped` error, while every other change of the batch gets its normal outcome;
//! invalid output is refused. This plugin exists so the tests can prove that. Never
//! deploy it.
//!
//! It maps ERP `Things` (`id` key, `name`) to CRM `things` (`id` key, `name`) and back,
//! copying both fields (a delete becomes a delete of the same key). Its config picks one
//! misbehaviour and the record that triggers it:
//!
//! ```json
//! {"mode": "trap", "trigger": "boom"}
//! ```
//!
//! A change whose `name` field is text equal to `trigger` misbehaves; every other change
//! (and every change in mode `none`) is copied normally. So one particular record of a
//! batch misbehaves and the rest must still sync. The modes, and the host guard each
//! one exercises:
//!
//! | mode          | what the triggering change does                        | host guard          |
//! |---------------|--------------------------------------------------------|---------------------|
//! | `none`        | nothing special                                        | (control)           |
//! | `loop`        | spins forever                                          | deadline / fuel     |
//! | `memory`      | allocates 1 MiB chunks forever, never freeing them     | memory cap          |
//! | `recursion`   | recurses without bound (not a tail call)               | stack limit         |
//! | `trap`        | panics, which is a Wasm trap (`panic = "abort"`)        | trap containment    |
//! | `huge-output` | answers with 1,000,000 small upserts                   | output size limit   |
//! | `bad-field`   | answers with a write naming field id 999               | output validation   |
//! | `wrong-count` | the batch answers one outcome fewer than it has changes | outcome count check |
//!
//! `wrong-count` is about the whole batch: when any change of a batch has the trigger
//! name, [`transform_batch`](MapPlugin::transform_batch) drops the last outcome. The
//! other modes act per change.
//!
//! `"trap_in_configure": true` makes `configure` itself trap, so the plugin cannot be
//! started at all (the host reports it as a plugin that failed to start).
//!
//! The config `{}` (what the engine passes when the admin set none) means mode `none`.
//! An unknown mode is refused at `/mode`; a mode other than `none` without a `trigger`
//! is refused at `/trigger`; an unknown key is refused at its own path.

use core::hint::black_box;

use dualwrite_guest::{
    Change, ConfigError, Descriptor, Direction, EntitySpec, FieldMapping, FieldValue, Host,
    MapPlugin, Outcome, ValueKind, Write, WriteOp, export_plugin,
};
use serde::Deserialize;

/// The field id of `id` on both sides (the key).
const ID: u32 = 0;
/// The field id of `name` on both sides.
const NAME: u32 = 1;
/// A field id that neither side declares, for `bad-field`.
const MISSING_FIELD: u32 = 999;
/// How many writes `huge-output` answers with.
const HUGE_OUTPUT_WRITES: usize = 1_000_000;
/// The size of one chunk `memory` hoards.
const CHUNK: usize = 1 << 20;

/// The config's JSON Schema, for `describe`.
const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "mode": {
      "enum": ["none", "loop", "memory", "recursion", "trap", "huge-output", "bad-field", "wrong-count"],
      "default": "none"
    },
    "trigger": { "type": "string" },
    "trap_in_configure": { "type": "boolean", "default": false }
  },
  "additionalProperties": false
}"#;

/// The misbehaviour a triggering change shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Behave normally, always.
    #[default]
    None,
    /// Loop forever.
    Loop,
    /// Allocate memory without bound.
    Memory,
    /// Recurse without bound.
    Recursion,
    /// Trap (panic).
    Trap,
    /// Answer with a million writes.
    HugeOutput,
    /// Answer with a write naming a field that does not exist.
    BadField,
    /// Answer a batch with one outcome too few.
    WrongCount,
}

/// The plugin: its mode and the `name` that triggers it.
#[derive(Debug, Default)]
pub struct Hostile {
    mode: Mode,
    trigger: Option<String>,
}

impl Hostile {
    /// Whether `change` is the one that misbehaves.
    fn triggered(&self, change: &Change) -> bool {
        self.mode != Mode::None
            && self
                .trigger
                .as_deref()
                .is_some_and(|trigger| change.text(NAME) == Some(trigger))
    }

    /// The normal answer: copy the row to the other side.
    fn copy(change: &Change) -> Outcome {
        if change.is_delete() {
            Outcome::write(Write::delete().set(ID, change.get(ID).clone()))
        } else {
            Outcome::write(
                Write::upsert()
                    .set(ID, change.get(ID).clone())
                    .set(NAME, change.get(NAME).clone()),
            )
        }
    }
}

impl MapPlugin for Hostile {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        let document: serde_json::Map<String, serde_json::Value> = serde_json::from_str(config)
            .map_err(|error| {
                ConfigError::new("", format!("the config must be a JSON object: {error}"))
            })?;
        let mut mode = Mode::None;
        let mut trigger = None;
        for (key, value) in document {
            match key.as_str() {
                "mode" => {
                    mode = Mode::deserialize(value)
                        .map_err(|error| ConfigError::new("/mode", error.to_string()))?;
                }
                "trap_in_configure" => {
                    if value == serde_json::Value::Bool(true) {
                        panic!("hostile plugin: trap in configure");
                    }
                }
                "trigger" => {
                    trigger = Some(String::deserialize(value).map_err(|error| {
                        ConfigError::new("/trigger", format!("must be a string: {error}"))
                    })?);
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("/{}", key.replace('~', "~0").replace('/', "~1")),
                        "unknown key; expected `mode`, `trigger` or `trap_in_configure`",
                    ));
                }
            }
        }
        if mode != Mode::None && trigger.is_none() {
            return Err(ConfigError::new(
                "/trigger",
                "missing: every mode but `none` needs the `name` that triggers it",
            ));
        }
        self.mode = mode;
        self.trigger = trigger;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        Descriptor::new(
            "hostile",
            "1.0.0",
            "Test-only: copies things both ways, and misbehaves on the configured trigger record",
        )
        .erp(
            EntitySpec::new("Things")
                .key("id", ValueKind::Text)
                .field("name", ValueKind::Text),
        )
        .crm(
            EntitySpec::new("things")
                .key("id", ValueKind::Text)
                .field("name", ValueKind::Text),
        )
        .mapping(FieldMapping::new("id", "id", Direction::Both, "copy"))
        .mapping(FieldMapping::new("name", "name", Direction::Both, "copy"))
        .config_schema(CONFIG_SCHEMA)
    }

    fn transform(&self, change: &Change, _host: &dyn Host) -> Outcome {
        if !self.triggered(change) {
            return Hostile::copy(change);
        }
        match self.mode {
            Mode::None | Mode::WrongCount => Hostile::copy(change),
            Mode::Loop => spin_forever(),
            Mode::Memory => hoard_memory(),
            Mode::Recursion => {
                let depth = dive(black_box(0));
                // Unreachable in practice: the stack runs out first.
                Outcome::rejected(format!("recursion ended at depth {depth}"), None)
            }
            Mode::Trap => panic!(
                "hostile plugin: trap on {}",
                self.trigger.as_deref().unwrap_or_default()
            ),
            Mode::HugeOutput => huge_output(change),
            Mode::BadField => Outcome::write(
                Write::upsert()
                    .set(ID, change.get(ID).clone())
                    .set(MISSING_FIELD, change.get(NAME).clone()),
            ),
        }
    }

    fn transform_batch(&self, batch: &[Change], host: &dyn Host) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = batch
            .iter()
            .map(|change| self.transform(change, host))
            .collect();
        if self.mode == Mode::WrongCount && batch.iter().any(|change| self.triggered(change)) {
            outcomes.pop();
        }
        outcomes
    }
}

/// `loop`: spins forever on state the optimizer cannot see through.
fn spin_forever() -> ! {
    let mut state: u64 = 1;
    loop {
        state = black_box(state)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        black_box(state);
    }
}

/// `memory`: keeps allocating 1 MiB chunks, writing to every page of each so the memory
/// is really used, and never frees them. Ends only when an allocation fails, which
/// aborts (a trap).
fn hoard_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut round: u8 = 0;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        round = round.wrapping_add(1);
        for page in chunk.chunks_mut(4096) {
            page[0] = round;
        }
        hoard.push(black_box(chunk));
        black_box(&mut hoard);
    }
}

/// `recursion`: recurses without bound. The result of the call is used after it returns
/// (so it is no tail call), and `black_box` keeps the compiler from folding it into a
/// loop. The exit condition can never hold in practice; it only keeps the function from
/// being an unconditional recursion.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    let depth = black_box(depth);
    let frame = black_box([depth; 8]);
    if depth == u64::MAX {
        return depth;
    }
    let below = black_box(dive(depth + 1));
    black_box(below.wrapping_add(frame.iter().sum::<u64>()))
}

/// `huge-output`: a million small upserts (the key only) of the triggering row.
///
/// Each write's field list is built at its exact size (one field) rather than with
/// [`Write::set`], whose first push reserves room for four: the output should be huge
/// in count while needing as little guest memory as it can, so that the host's output
/// limit, not its memory cap, is what stops it.
fn huge_output(change: &Change) -> Outcome {
    let key = change.get(ID);
    Outcome::Writes(
        (0..HUGE_OUTPUT_WRITES)
            .map(|_| Write {
                op: WriteOp::Upsert,
                fields: vec![FieldValue {
                    field: ID,
                    value: key.clone(),
                }],
            })
            .collect(),
    )
}

export_plugin!(Hostile);

#[cfg(test)]
mod tests {
    use dualwrite_guest::testing::{FakeHost, run};
    use dualwrite_guest::{ChangeOp, Side, Value};

    use super::*;

    fn change(source: Side, op: ChangeOp, id: &str, name: Option<&str>) -> Change {
        Change {
            source,
            op,
            row: vec![id.into(), name.into()],
            changed: Vec::new(),
        }
    }

    fn upsert(id: &str, name: &str) -> Outcome {
        Outcome::write(Write::upsert().set(ID, id).set(NAME, name))
    }

    fn configure(config: &str) -> Result<Hostile, ConfigError> {
        let mut plugin = Hostile::default();
        plugin.configure(config).map(|()| plugin)
    }

    #[test]
    fn describes_things_on_both_sides() {
        let descriptor = Hostile::default().describe();
        assert_eq!(descriptor.name, "hostile");
        assert_eq!(descriptor.version, "1.0.0");
        for (side, entity) in [(Side::Erp, "Things"), (Side::Crm, "things")] {
            let spec = descriptor.entity(side);
            assert_eq!(spec.entity, entity);
            assert_eq!(spec.id_of("id"), Some(ID));
            assert_eq!(spec.id_of("name"), Some(NAME));
            assert!(spec.fields[ID as usize].key);
            assert!(!spec.fields[NAME as usize].key);
            assert!(
                spec.fields
                    .iter()
                    .all(|field| field.kind == ValueKind::Text)
            );
        }
        serde_json::from_str::<serde_json::Value>(&descriptor.config_schema).unwrap();
    }

    #[test]
    fn copies_inserts_updates_and_deletes_both_ways() {
        let batch = [
            change(Side::Erp, ChangeOp::Insert, "1", Some("one")),
            change(Side::Crm, ChangeOp::Update, "2", Some("two")),
            change(Side::Erp, ChangeOp::Delete, "3", None),
        ];
        let outcomes = run::<Hostile>("{}", &batch, &FakeHost::new()).unwrap();
        assert_eq!(
            outcomes,
            vec![
                upsert("1", "one"),
                upsert("2", "two"),
                Outcome::write(Write::delete().set(ID, "3")),
            ]
        );
    }

    #[test]
    fn untriggered_changes_are_copied_in_every_mode() {
        for mode in [
            "none",
            "loop",
            "memory",
            "recursion",
            "trap",
            "huge-output",
            "bad-field",
            "wrong-count",
        ] {
            let config = format!(r#"{{"mode": "{mode}", "trigger": "boom"}}"#);
            let batch = [
                change(Side::Erp, ChangeOp::Insert, "1", Some("fine")),
                change(Side::Crm, ChangeOp::Insert, "2", Some("Boom")),
                change(Side::Erp, ChangeOp::Delete, "3", None),
            ];
            let outcomes = run::<Hostile>(&config, &batch, &FakeHost::new()).unwrap();
            assert_eq!(
                outcomes,
                vec![
                    upsert("1", "fine"),
                    upsert("2", "Boom"),
                    Outcome::write(Write::delete().set(ID, "3")),
                ],
                "mode {mode}"
            );
        }
    }

    #[test]
    fn mode_none_ignores_the_trigger() {
        let batch = [change(Side::Erp, ChangeOp::Insert, "1", Some("boom"))];
        let outcomes = run::<Hostile>(
            r#"{"mode": "none", "trigger": "boom"}"#,
            &batch,
            &FakeHost::new(),
        )
        .unwrap();
        assert_eq!(outcomes, vec![upsert("1", "boom")]);
    }

    #[test]
    fn bad_field_names_field_999_for_the_trigger_only() {
        let batch = [
            change(Side::Erp, ChangeOp::Insert, "1", Some("fine")),
            change(Side::Erp, ChangeOp::Insert, "2", Some("boom")),
        ];
        let outcomes = run::<Hostile>(
            r#"{"mode": "bad-field", "trigger": "boom"}"#,
            &batch,
            &FakeHost::new(),
        )
        .unwrap();
        assert_eq!(outcomes[0], upsert("1", "fine"));
        assert_eq!(
            outcomes[1],
            Outcome::write(Write::upsert().set(ID, "2").set(MISSING_FIELD, "boom"))
        );
    }

    #[test]
    fn huge_output_answers_a_million_key_only_upserts() {
        let plugin = configure(r#"{"mode": "huge-output", "trigger": "boom"}"#).unwrap();
        let outcome = plugin.transform(
            &change(Side::Crm, ChangeOp::Update, "7", Some("boom")),
            &FakeHost::new(),
        );
        let Outcome::Writes(writes) = outcome else {
            panic!("expected writes, got {outcome:?}");
        };
        assert_eq!(writes.len(), HUGE_OUTPUT_WRITES);
        assert!(writes.iter().all(|write| write.op == WriteOp::Upsert
            && write.fields.len() == 1
            && write.fields[0].field == ID
            && write.fields[0].value == Value::from("7")));
    }

    #[test]
    fn wrong_count_drops_one_outcome_only_when_the_batch_has_the_trigger() {
        let config = r#"{"mode": "wrong-count", "trigger": "boom"}"#;
        let clean = [
            change(Side::Erp, ChangeOp::Insert, "1", Some("a")),
            change(Side::Erp, ChangeOp::Insert, "2", Some("b")),
        ];
        assert_eq!(
            run::<Hostile>(config, &clean, &FakeHost::new())
                .unwrap()
                .len(),
            2
        );
        let dirty = [
            change(Side::Erp, ChangeOp::Insert, "1", Some("a")),
            change(Side::Erp, ChangeOp::Insert, "2", Some("boom")),
            change(Side::Erp, ChangeOp::Insert, "3", Some("c")),
        ];
        assert_eq!(
            run::<Hostile>(config, &dirty, &FakeHost::new())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn unknown_mode_is_refused_at_mode() {
        let error = configure(r#"{"mode": "explode", "trigger": "boom"}"#).unwrap_err();
        assert_eq!(error.path, "/mode");
        assert!(error.message.contains("explode"), "{}", error.message);
        let error = configure(r#"{"mode": 3, "trigger": "boom"}"#).unwrap_err();
        assert_eq!(error.path, "/mode");
    }

    #[test]
    fn missing_trigger_is_refused_for_every_mode_but_none() {
        for mode in [
            "loop",
            "memory",
            "recursion",
            "trap",
            "huge-output",
            "bad-field",
            "wrong-count",
        ] {
            let error = configure(&format!(r#"{{"mode": "{mode}"}}"#)).unwrap_err();
            assert_eq!(error.path, "/trigger", "mode {mode}");
        }
        configure(r#"{"mode": "none"}"#).unwrap();
        configure("{}").unwrap();
    }

    #[test]
    fn malformed_configs_are_refused_with_a_path() {
        assert_eq!(configure("[1]").unwrap_err().path, "");
        assert_eq!(configure("not json").unwrap_err().path, "");
        assert_eq!(
            configure(r#"{"mode": "trap", "trigger": 5}"#)
                .unwrap_err()
                .path,
            "/trigger"
        );
        assert_eq!(
            configure(r#"{"mode": "trap", "trigger": "x", "extra/key": 1}"#)
                .unwrap_err()
                .path,
            "/extra~1key"
        );
    }

    #[test]
    fn a_refused_config_keeps_the_previous_one() {
        let mut plugin = configure(r#"{"mode": "bad-field", "trigger": "boom"}"#).unwrap();
        plugin.configure(r#"{"mode": "loop"}"#).unwrap_err();
        assert_eq!(plugin.mode, Mode::BadField);
        assert_eq!(plugin.trigger.as_deref(), Some("boom"));
    }
}
