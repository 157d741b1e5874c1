//! The histories of the convergence property tests (`tests/convergence.rs` on two SQLite
//! files, `tests/convergence_servers.rs` on PostgreSQL and MariaDB): the op model of
//! random concurrent edits of the customer-groups map's tables, its proptest strategy,
//! how an edit is applied to any pair of tables ([`Tables`], [`edit`]) and the runner
//! that reports a minimized failing history ([`run_property`], [`run_histories`]).
//!
//! Shared by every convergence test: the one-sided last-write oracle ([`oracle`]) and the
//! engine's steps and settles ([`engine`]); the histories of columns that normalize what
//! they are given are in [`kinds`] (`tests/convergence_kinds*.rs`).

pub mod engine;
pub mod kinds;
pub mod oracle;

use std::collections::BTreeMap;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// The key pool: small, so rows collide across sides and get reused after deletes.
pub const KEYS: [(&str, &str); 4] = [
    ("USMF", "10"),
    ("USMF", "20"),
    ("DEMF", "10"),
    ("DEMF", "30"),
];
/// Descriptions the edits choose from (NULL included).
pub const DESCRIPTIONS: [Option<&str>; 4] =
    [None, Some("Wholesale"), Some("Retail"), Some("Export")];
/// Sales tax included in price: unknown, no, yes.
pub const TAXES: [Option<bool>; 3] = [None, Some(false), Some(true)];

/// The two sides, as the test writes them (like the applications would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Which {
    /// The ERP table `CustCustomerGroup`.
    Erp,
    /// The CRM table `msdyn_customergroups`.
    Crm,
}

/// Which fields an update sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// The description only.
    Description,
    /// The tax flag only.
    Tax,
    /// Both.
    Both,
}

/// One step of a generated history.
#[derive(Debug, Clone)]
pub enum Op {
    /// Inserts the row (both fields) if that side lacks it, else updates `fields`.
    Write {
        /// Where.
        side: Which,
        /// Index into [`KEYS`].
        key: usize,
        /// Index into [`DESCRIPTIONS`].
        description: usize,
        /// Index into [`TAXES`].
        tax: usize,
        /// What an update sets.
        fields: Fields,
    },
    /// Deletes the row if that side has it.
    Delete {
        /// Where.
        side: Which,
        /// Index into [`KEYS`].
        key: usize,
    },
    /// One engine step.
    Step,
}

/// A row of either side in the map's common terms: (description, tax included).
pub type Row = (Option<String>, Option<bool>);
/// A whole table by (company, group id).
pub type Table = BTreeMap<(String, String), Row>;

/// The two tables of a deployment, as the applications reach them; every method works on
/// the row of `KEYS[key]` on `side`, in common terms (the implementation maps the tax
/// flag to what the side stores).
pub trait Tables {
    /// The row, if the side has it.
    fn row(&mut self, side: Which, key: usize) -> Option<Row>;
    /// Inserts the row (absent before).
    fn insert(&mut self, side: Which, key: usize, row: &Row);
    /// Sets `fields` of the existing row to those of `row`.
    fn update(&mut self, side: Which, key: usize, fields: Fields, row: &Row);
    /// Deletes the row; returns whether there was one.
    fn delete(&mut self, side: Which, key: usize) -> bool;
    /// Every row of the side.
    fn table(&mut self, side: Which) -> Table;
}

/// What one edit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Edit {
    /// It changed a row: a logical change the engine must carry.
    pub changed: bool,
    /// It wrote a row (an update that set the values the row held counts).
    pub touched: bool,
}

/// Applies one edit (not a step) as an application would.
pub fn edit(tables: &mut impl Tables, op: &Op) -> Edit {
    match *op {
        Op::Step => Edit::default(),
        Op::Delete { side, key } => {
            let deleted = tables.delete(side, key);
            Edit {
                changed: deleted,
                touched: deleted,
            }
        }
        Op::Write {
            side,
            key,
            description,
            tax,
            fields,
        } => {
            let row = (DESCRIPTIONS[description].map(str::to_owned), TAXES[tax]);
            let Some(current) = tables.row(side, key) else {
                tables.insert(side, key, &row);
                return Edit {
                    changed: true,
                    touched: true,
                };
            };
            tables.update(side, key, fields, &row);
            let description_changed = fields != Fields::Tax && current.0 != row.0;
            let tax_changed = fields != Fields::Description && current.1 != row.1;
            Edit {
                changed: description_changed || tax_changed,
                touched: true,
            }
        }
    }
}

/// Any op: writes, deletes and steps, 5:2:2.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Which::Erp), Just(Which::Crm)];
    let fields = prop_oneof![
        Just(Fields::Description),
        Just(Fields::Tax),
        Just(Fields::Both)
    ];
    prop_oneof![
        5 => (side.clone(), 0..KEYS.len(), 0..DESCRIPTIONS.len(), 0..TAXES.len(), fields)
            .prop_map(|(side, key, description, tax, fields)| Op::Write {
                side,
                key,
                description,
                tax,
                fields,
            }),
        2 => (side, 0..KEYS.len()).prop_map(|(side, key)| Op::Delete { side, key }),
        2 => Just(Op::Step),
    ]
}

/// `PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// Runs [`cases`]`(default_cases)` random histories of 8 to 47 ops, each with a read
/// limit picked from `read_limits`, through `check` (which describes what broke); panics
/// with the minimized failing history.
pub fn run_property(
    default_cases: u32,
    read_limits: &'static [usize],
    check: impl Fn(&[Op], usize) -> Result<(), String>,
) {
    run_histories(default_cases, op_strategy(), 8..48, read_limits, check);
}

/// [`run_property`] for histories of any op model: `length` ops drawn from `op`.
pub fn run_histories<O: Clone + std::fmt::Debug>(
    default_cases: u32,
    op: impl Strategy<Value = O>,
    length: std::ops::Range<usize>,
    read_limits: &'static [usize],
    check: impl Fn(&[O], usize) -> Result<(), String>,
) {
    let cases = cases(default_cases);
    let mut runner = TestRunner::new(Config {
        cases,
        // Minimized failures are kept as `regression_*` tests, not in files.
        failure_persistence: None,
        // Shrinking is bounded by time, not by proptest's default of 4 tries a case
        // (`PROPTEST_MAX_SHRINK_ITERS=0` reports the first failing history as found).
        max_shrink_iters: std::env::var("PROPTEST_MAX_SHRINK_ITERS")
            .ok()
            .and_then(|iterations| iterations.parse().ok())
            .unwrap_or(100_000),
        max_shrink_time: 120_000,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(op, length),
        prop::sample::select(read_limits),
    );
    let started = Instant::now();
    let result = runner.run(&strategy, |(ops, read_limit)| {
        check(&ops, read_limit).map_err(TestCaseError::fail)
    });
    eprintln!("{cases} case(s) in {:?}", started.elapsed());
    if let Err(error) = result {
        match error {
            TestError::Fail(reason, (ops, _)) => {
                panic!("minimal failing history ({} ops):\n{reason}", ops.len())
            }
            TestError::Abort(reason) => panic!("aborted: {reason}"),
        }
    }
}

/// An insert (or, if the row exists, an update of both fields) on `side`.
pub fn write(side: Which, key: usize, description: usize, tax: usize) -> Op {
    Op::Write {
        side,
        key,
        description,
        tax,
        fields: Fields::Both,
    }
}

/// An update of the description only (an insert of it with a NULL tax flag if the row
/// is missing).
pub fn describe(side: Which, key: usize, description: usize) -> Op {
    Op::Write {
        side,
        key,
        description,
        tax: 0,
        fields: Fields::Description,
    }
}

/// An update of the tax flag only.
pub fn tax(side: Which, key: usize, tax: usize) -> Op {
    Op::Write {
        side,
        key,
        description: 0,
        tax,
        fields: Fields::Tax,
    }
}

/// A delete on `side`.
pub fn delete(side: Which, key: usize) -> Op {
    Op::Delete { side, key }
}

/// Minimized histories both convergence tests replay. Indexes: key 0 is (USMF, 10);
/// descriptions 0..4 are NULL, Wholesale, Retail, Export; tax flags 0..3 are NULL, no,
/// yes. With side-wins ERP the expected outcome of a conflict is the ERP side's version
/// on both sides.
pub mod histories {
    use super::{Op, Which, delete, describe, tax, write};

    /// Both sides insert the same key before the engine steps. Expected: both hold the
    /// ERP's row (Wholesale, yes).
    pub fn the_same_key_inserted_on_both_sides() -> Vec<Op> {
        vec![write(Which::Erp, 0, 1, 2), write(Which::Crm, 0, 2, 1)]
    }

    /// Both sides change the description of a synced row between two steps. Expected:
    /// both hold the ERP's (Retail).
    pub fn the_same_field_updated_on_both_sides() -> Vec<Op> {
        vec![
            write(Which::Erp, 0, 1, 2),
            Op::Step,
            describe(Which::Erp, 0, 2),
            describe(Which::Crm, 0, 3),
        ]
    }

    /// The ERP changes the description, the CRM the tax flag, between two steps: no field
    /// is changed on both sides. Expected: the edits merge, both hold (Retail, no).
    pub fn different_fields_updated_on_both_sides() -> Vec<Op> {
        vec![
            write(Which::Erp, 0, 1, 2),
            Op::Step,
            describe(Which::Erp, 0, 2),
            tax(Which::Crm, 0, 1),
        ]
    }

    /// The CRM deletes a synced row while the ERP changes its description. Expected: the
    /// ERP's version wins, both hold (Export, yes).
    pub fn a_delete_on_the_crm_side_and_an_update_on_the_erp_side() -> Vec<Op> {
        vec![
            write(Which::Erp, 0, 1, 2),
            Op::Step,
            delete(Which::Crm, 0),
            describe(Which::Erp, 0, 3),
        ]
    }

    /// The CRM inserts and deletes a row, then the ERP inserts the same key, all before a
    /// step. Expected: both hold the ERP's row (Retail, no), the latest state.
    pub fn a_delete_older_than_the_other_sides_insert() -> Vec<Op> {
        vec![
            write(Which::Crm, 0, 1, 2),
            delete(Which::Crm, 0),
            write(Which::Erp, 0, 2, 1),
        ]
    }

    /// The CRM changes both fields of a synced row (NULL, no) to (Wholesale, NULL) while
    /// the ERP sets its tax flag to NULL, read one change at a time with another ERP change
    /// first: the CRM's change loses, and the ERP's fresh look writes only the tax flag, which
    /// the CRM already holds. Expected: the ERP's row (NULL, NULL) on both sides. Was: the
    /// write was taken as an agreement and the CRM kept Wholesale.
    pub fn a_lost_conflict_whose_winner_matches_in_the_fields_it_changed() -> Vec<Op> {
        vec![
            write(Which::Erp, 0, 0, 1),
            Op::Step,
            write(Which::Crm, 0, 1, 0),
            write(Which::Erp, 1, 2, 0),
            tax(Which::Erp, 0, 0),
        ]
    }
}
