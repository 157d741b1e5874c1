//! The histories of the value-kinds convergence property (`tests/convergence_kinds.rs`
//! on two SQLite files, `tests/convergence_kinds_servers.rs` on PostgreSQL and MariaDB):
//! an item table whose columns normalize what they are given (SQLite `NUMERIC` and
//! `DECIMAL(10,2)`; PostgreSQL `numeric(10,2)`, `numeric`, `char(5)` and
//! `timestamp(0)`; MariaDB `DECIMAL(10,2)`, `decimal(12,4)`, `CHAR(5)` and `datetime(3)`),
//! synced by a declarative map ([`items_map`]); the op model of random concurrent edits with values both sides can
//! hold by meaning, written in varied forms (`12.5`, `12.50`, `100.00`, `7`; codes
//! with trailing spaces; timestamps with and without fractional seconds, `T` or space);
//! how an edit is applied to any pair of tables ([`Tables`], [`edit`]); and what a value
//! means in a column ([`Columns::same`]), the oracle's own comparison (not the engine's).
//!
//! Every row is handled as text ([`Item`]): what the test writes, and what a side holds
//! as read back (decimals and timestamps as the store prints them).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use proptest::prelude::*;

use super::Which;

/// The key pool: small enough that keys are edited several times and some on both
/// sides, large enough that many are edited on one side only (see [`op_strategy`]).
pub const KEYS: [&str; 10] = [
    "A-01", "A-02", "A-03", "A-04", "A-05", "A-06", "A-07", "A-08", "A-09", "A-10",
];

/// The map's name.
pub const MAP: &str = "items";

/// A synced field (the key aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// ERP `descr`, CRM `title`: text.
    Descr,
    /// ERP `price`, CRM `amount`: a decimal.
    Price,
    /// ERP `qty`, CRM `quantity`: a decimal.
    Qty,
    /// `code`: text of at most 5 characters.
    Code,
    /// `grade`: text of at most 5 characters.
    Grade,
    /// `stamp`: a timestamp.
    Stamp,
}

/// Every field, in column order.
pub const FIELDS: [Field; 6] = [
    Field::Descr,
    Field::Price,
    Field::Qty,
    Field::Code,
    Field::Grade,
    Field::Stamp,
];

impl Field {
    /// The column on the ERP (`items`) and on the CRM (`products`).
    pub fn columns(self) -> (&'static str, &'static str) {
        match self {
            Field::Descr => ("descr", "title"),
            Field::Price => ("price", "amount"),
            Field::Qty => ("qty", "quantity"),
            Field::Code => ("code", "code"),
            Field::Grade => ("grade", "grade"),
            Field::Stamp => ("stamp", "stamp"),
        }
    }

    /// The column on `side`.
    pub fn column(self, side: Which) -> &'static str {
        let (erp, crm) = self.columns();
        match side {
            Which::Erp => erp,
            Which::Crm => crm,
        }
    }

    /// The declarative map's kind of the field (`None`: text, the default).
    pub fn kind(self) -> Option<&'static str> {
        match self {
            Field::Price | Field::Qty => Some("decimal"),
            Field::Stamp => Some("timestamp"),
            Field::Descr | Field::Code | Field::Grade => None,
        }
    }
}

/// A row's fields as text: what the test writes, or what a side holds (read back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    /// Description.
    pub descr: Option<String>,
    /// Price, decimal text.
    pub price: Option<String>,
    /// Quantity, decimal text.
    pub qty: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Grade.
    pub grade: Option<String>,
    /// Timestamp, `YYYY-MM-DD HH:MM:SS[.f...]` (or with `T`).
    pub stamp: Option<String>,
}

impl Item {
    /// The value of `field`.
    pub fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Descr => &self.descr,
            Field::Price => &self.price,
            Field::Qty => &self.qty,
            Field::Code => &self.code,
            Field::Grade => &self.grade,
            Field::Stamp => &self.stamp,
        }
        .as_deref()
    }
}

/// A whole table by key.
pub type Table = BTreeMap<String, Item>;

/// How a text column keeps trailing spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// As written.
    Exact,
    /// `CHAR(n)`: PostgreSQL pads with spaces, MariaDB cuts them off when read; trailing
    /// spaces are not meaning.
    Padded,
}

/// How one side's table keeps what it is given: what its values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The `code` column.
    pub code: Text,
    /// The `grade` column.
    pub grade: Text,
    /// Fractional-second digits the `stamp` column keeps (9: the instant exactly).
    pub stamp_digits: u32,
}

impl Columns {
    /// Whether `a`, held by a side with these columns, and `b`, held by a side with
    /// columns `other`, are the same row by meaning: decimals by numeric value
    /// (12.5 == 12.50, 100 == 100.00); text exactly, but with trailing spaces ignored
    /// when either column is a `CHAR(n)`; timestamps when less than one unit of the
    /// coarser column's precision apart (`timestamp(0)`: 1 s; `datetime(3)`: 1 ms; SQLite
    /// text: exact); the description exactly.
    pub fn same(&self, a: &Item, other: &Columns, b: &Item) -> bool {
        FIELDS
            .iter()
            .all(|field| self.same_value(*field, a.get(*field), other, b.get(*field)))
    }

    /// [`Columns::same`] for one field.
    pub fn same_value(
        &self,
        field: Field,
        a: Option<&str>,
        other: &Columns,
        b: Option<&str>,
    ) -> bool {
        let (a, b) = match (a, b) {
            (None, None) => return true,
            (Some(a), Some(b)) => (a, b),
            _ => return false,
        };
        match field {
            Field::Descr => a == b,
            Field::Price | Field::Qty => match (decimal(a), decimal(b)) {
                (Some(a), Some(b)) => a == b,
                _ => a == b,
            },
            Field::Code | Field::Grade => {
                let padded = |columns: &Columns| {
                    let text = if field == Field::Code {
                        columns.code
                    } else {
                        columns.grade
                    };
                    text == Text::Padded
                };
                if padded(self) || padded(other) {
                    a.trim_end_matches(' ') == b.trim_end_matches(' ')
                } else {
                    a == b
                }
            }
            Field::Stamp => match (timestamp(a), timestamp(b)) {
                (Some(a), Some(b)) => {
                    let digits = self.stamp_digits.min(other.stamp_digits).min(9);
                    let unit = 10_i64.pow(9 - digits);
                    (a - b)
                        .num_nanoseconds()
                        .is_some_and(|gap| gap.abs() < unit)
                }
                _ => a == b,
            },
        }
    }
}

/// A decimal text as (negative, integer digits without leading zeros, fraction digits
/// without trailing zeros); `None` if it is not one. Zero has no sign.
fn decimal(text: &str) -> Option<(bool, String, String)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if (integer.is_empty() && fraction.is_empty()) || !all_digits(integer) || !all_digits(fraction)
    {
        return None;
    }
    let integer = integer.trim_start_matches('0').to_owned();
    let fraction = fraction.trim_end_matches('0').to_owned();
    let zero = integer.is_empty() && fraction.is_empty();
    Some((negative && !zero, integer, fraction))
}

/// `YYYY-MM-DD HH:MM:SS[.f...]`, with a space or `T`.
fn timestamp(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(&text.replacen('T', " ", 1), "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// The two tables of a deployment, as the applications reach them; every method works
/// on the row of `KEYS[key]` on `side`.
pub trait Tables {
    /// How `side` keeps values.
    fn columns(&self, side: Which) -> Columns;
    /// The row as the side holds it, if it has it.
    fn row(&mut self, side: Which, key: usize) -> Option<Item>;
    /// Inserts the row (absent before) with every field of `item`.
    fn insert(&mut self, side: Which, key: usize, item: &Item);
    /// Sets `fields` of the existing row to those of `item`.
    fn update(&mut self, side: Which, key: usize, fields: &[Field], item: &Item);
    /// Deletes the row; returns whether there was one.
    fn delete(&mut self, side: Which, key: usize) -> bool;
    /// Every row of the side.
    fn table(&mut self, side: Which) -> Table;

    /// Whether both tables hold the same keys and rows by meaning; else both tables.
    fn converged(&mut self) -> Result<(), String> {
        let (erp, crm) = (self.table(Which::Erp), self.table(Which::Crm));
        let (erp_columns, crm_columns) = (self.columns(Which::Erp), self.columns(Which::Crm));
        let same = erp.len() == crm.len()
            && erp
                .iter()
                .zip(&crm)
                .all(|((erp_key, erp), (crm_key, crm))| {
                    erp_key == crm_key && erp_columns.same(erp, &crm_columns, crm)
                });
        if same {
            Ok(())
        } else {
            Err(format!("ERP: {erp:#?}\nCRM: {crm:#?}"))
        }
    }
}

/// One step of a generated history.
#[derive(Debug, Clone)]
pub enum Op {
    /// Inserts the row (every field of `item`) if that side lacks it, else updates
    /// `fields`.
    Write {
        /// Where.
        side: Which,
        /// Index into [`KEYS`].
        key: usize,
        /// The values.
        item: Item,
        /// What an update sets (not empty).
        fields: Vec<Field>,
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

/// What one edit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    /// It changed the row by meaning: a logical change the engine must carry.
    pub changed: bool,
    /// It wrote a row (an update that set values the row held counts).
    pub touched: bool,
    /// The row the side holds right after it, read back.
    pub stored: Option<Item>,
    /// The edit as done (`Crm A-03 update amount = "12.50"`), for a history's trace.
    pub what: String,
}

/// Applies one edit (not a step) as an application would, and reads the row back.
pub fn edit(tables: &mut impl Tables, op: &Op) -> Edit {
    match op {
        Op::Step => Edit::default(),
        Op::Delete { side, key } => {
            let deleted = tables.delete(*side, *key);
            Edit {
                changed: deleted,
                touched: deleted,
                stored: None,
                what: format!("{side:?} {} delete", KEYS[*key]),
            }
        }
        Op::Write {
            side,
            key,
            item,
            fields,
        } => {
            let before = tables.row(*side, *key);
            let (verb, set): (&str, &[Field]) = match before {
                None => {
                    tables.insert(*side, *key, item);
                    ("insert", &FIELDS)
                }
                Some(_) => {
                    tables.update(*side, *key, fields, item);
                    ("update", fields)
                }
            };
            let stored = tables.row(*side, *key);
            let columns = tables.columns(*side);
            let changed = match (&before, &stored) {
                (Some(before), Some(after)) => !columns.same(before, &columns, after),
                _ => true,
            };
            let values: Vec<String> = set
                .iter()
                .map(|field| {
                    let value = item
                        .get(*field)
                        .map_or("NULL".to_owned(), |v| format!("{v:?}"));
                    format!("{} = {value}", field.column(*side))
                })
                .collect();
            Edit {
                changed,
                touched: true,
                stored,
                what: format!("{side:?} {} {verb} {}", KEYS[*key], values.join(", ")),
            }
        }
    }
}

/// A decimal of at most 8 integer and 2 fraction digits, in cents, written in one of
/// three forms: shortest (`12.5`, `100`, `0.1`), one fraction digit at least (`12.5`,
/// `100.0`) or cents (`12.50`, `100.00`, `0.10`).
fn decimal_text(cents: i64, form: u8) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let (units, cents) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    match (form, cents) {
        (0, 0) => format!("{sign}{units}"),
        (0 | 1, cents) if cents % 10 == 0 => format!("{sign}{units}.{}", cents / 10),
        (_, cents) => format!("{sign}{units}.{cents:02}"),
    }
}

fn decimal_strategy() -> impl Strategy<Value = Option<String>> {
    let units = -99_999_999_i64..=99_999_999;
    // Most values have fraction digits a column may drop or add (whole numbers, tenths),
    // so that their forms differ from what the other side stores.
    let cents = prop_oneof![
        2 => prop::sample::select(vec![1250_i64, 10_000, 10, 700, -325, 0, -50, 9_999_999_999]),
        2 => units.clone().prop_map(|units| units * 100),
        2 => (units.clone(), 0..10i64).prop_map(|(units, tenths)| units * 100 + tenths * 10),
        1 => (units, 0..100i64).prop_map(|(units, cents)| units * 100 + cents),
    ];
    prop_oneof![
        1 => Just(None),
        6 => (cents, 0..3u8).prop_map(|(cents, form)| Some(decimal_text(cents, form))),
    ]
}

/// Texts of at most 5 characters, some with trailing spaces.
const CODES: [Option<&str>; 8] = [
    None,
    Some(""),
    Some("A"),
    Some("AB "),
    Some("ABCDE"),
    Some("X  "),
    Some("ab"),
    Some("Q    "),
];

fn code_strategy() -> impl Strategy<Value = Option<String>> {
    prop::sample::select(CODES.to_vec()).prop_map(|code| code.map(str::to_owned))
}

/// A timestamp within ten days of 2024-03-01, with no fraction, tenths, milliseconds or
/// microseconds, with a space or `T`.
fn stamp_strategy() -> impl Strategy<Value = Option<String>> {
    let fraction = prop_oneof![
        Just(String::new()),
        (0..10u32).prop_map(|tenths| format!(".{tenths}")),
        (0..1_000u32).prop_map(|millis| format!(".{millis:03}")),
        (0..1_000_000u32).prop_map(|micros| format!(".{micros:06}")),
    ];
    let stamp = (0..864_000i64, fraction, any::<bool>()).prop_map(|(seconds, fraction, t)| {
        let base = NaiveDateTime::parse_from_str("2024-03-01 00:00:00", "%Y-%m-%d %H:%M:%S")
            .expect("base timestamp");
        let at = base + chrono::Duration::seconds(seconds);
        let separator = if t { "T" } else { " " };
        format!(
            "{}{separator}{}{fraction}",
            at.format("%Y-%m-%d"),
            at.format("%H:%M:%S")
        )
    });
    prop_oneof![1 => Just(None), 5 => stamp.prop_map(Some)]
}

const DESCRIPTIONS: [Option<&str>; 5] = [
    None,
    Some("Widget"),
    Some("Gadget"),
    Some("Gizmo"),
    Some("Sprocket"),
];

fn item_strategy() -> impl Strategy<Value = Item> {
    (
        prop::sample::select(DESCRIPTIONS.to_vec()),
        decimal_strategy(),
        decimal_strategy(),
        code_strategy(),
        code_strategy(),
        stamp_strategy(),
    )
        .prop_map(|(descr, price, qty, code, grade, stamp)| Item {
            descr: descr.map(str::to_owned),
            price,
            qty,
            code,
            grade,
            stamp,
        })
}

/// The side of an edit of `KEYS[key]`, from a roll of 0..10: keys 0-3 lean to the CRM
/// and keys 4-7 to the ERP (9 edits in 10), so that many keys are edited on one side
/// only, several times; keys 8 and 9 are edited on either side alike.
fn side_of(key: usize, roll: u8) -> Which {
    let lean = match key {
        0..4 => Some(Which::Crm),
        4..8 => Some(Which::Erp),
        _ => None,
    };
    match (lean, roll) {
        (Some(Which::Crm), 0) | (None, 0..5) => Which::Erp,
        (Some(Which::Erp), 0) | (None, _) => Which::Crm,
        (Some(side), _) => side,
    }
}

/// Any op: writes (updating one field 3 times in 4), deletes and steps, 6:1:2.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let fields = prop_oneof![
        3 => prop::sample::select(FIELDS.to_vec()).prop_map(|field| vec![field]),
        1 => prop::sample::subsequence(FIELDS.to_vec(), 2..=FIELDS.len()),
    ];
    prop_oneof![
        6 => (0..KEYS.len(), 0..10u8, item_strategy(), fields).prop_map(
            |(key, roll, item, fields)| Op::Write {
                side: side_of(key, roll),
                key,
                item,
                fields,
            }
        ),
        1 => (0..KEYS.len(), 0..10u8).prop_map(|(key, roll)| Op::Delete {
            side: side_of(key, roll),
            key,
        }),
        2 => Just(Op::Step),
    ]
}

/// The `[maps.items]` section of a config: a declarative map between the ERP's `items`
/// (key `item_no`) and the CRM's `products` (key `sku`) carrying `fields` both ways,
/// with `kind = "decimal"` / `"timestamp"` where the field has one; the ERP wins
/// conflicts.
pub fn items_map(fields: &[Field]) -> String {
    let lines: Vec<(Field, &str)> = fields.iter().map(|field| (*field, "both")).collect();
    items_map_with(&lines)
}

/// [`items_map`] with each field's `direction` (`both`, `to-erp`, `to-crm`).
pub fn items_map_with(fields: &[(Field, &str)]) -> String {
    let mut lines = vec![r#"    { erp = "item_no", crm = "sku" },"#.to_owned()];
    for (field, direction) in fields {
        let (erp, crm) = field.columns();
        let kind = field
            .kind()
            .map(|kind| format!(", kind = {kind:?}"))
            .unwrap_or_default();
        lines.push(format!(
            "    {{ erp = {erp:?}, crm = {crm:?}{kind}, direction = {direction:?} }},"
        ));
    }
    format!(
        r#"
[maps.{MAP}]
plugin = "declarative.wasm"
erp = {{ side = "erp", entity = "items", key = ["item_no"] }}
crm = {{ side = "crm", entity = "products", key = ["sku"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.{MAP}.config]
name = "{MAP}"
erp = {{ entity = "items", key = ["item_no"] }}
crm = {{ entity = "products", key = ["sku"] }}
fields = [
{}
]
"#,
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXACT: Columns = Columns {
        code: Text::Exact,
        grade: Text::Exact,
        stamp_digits: 9,
    };

    fn price(text: &str) -> Item {
        Item {
            price: Some(text.to_owned()),
            ..Item::default()
        }
    }

    #[test]
    fn decimals_mean_their_value() {
        for (a, b) in [
            ("12.5", "12.50"),
            ("12.5", "12.500"),
            ("100", "100.00"),
            ("0.1", "0.10"),
            ("-0", "0.00"),
        ] {
            assert!(EXACT.same(&price(a), &EXACT, &price(b)), "{a} == {b}");
        }
        assert!(!EXACT.same(&price("12.5"), &EXACT, &price("12.05")));
        assert!(!EXACT.same(&price("-1"), &EXACT, &price("1")));
    }

    #[test]
    fn trailing_spaces_mean_nothing_in_or_out_of_a_char_column() {
        let code = |text: &str| Item {
            code: Some(text.to_owned()),
            ..Item::default()
        };
        let padded = Columns {
            code: Text::Padded,
            ..EXACT
        };
        assert!(padded.same(&code("AB   "), &EXACT, &code("AB ")));
        assert!(EXACT.same(&code("AB"), &padded, &code("AB   ")));
        assert!(!EXACT.same(&code("AB"), &EXACT, &code("AB ")));
        assert!(!padded.same(&code(" AB"), &EXACT, &code("AB")));
    }

    #[test]
    fn timestamps_mean_the_coarser_columns_precision() {
        let stamp = |text: &str| Item {
            stamp: Some(text.to_owned()),
            ..Item::default()
        };
        let seconds = Columns {
            stamp_digits: 0,
            ..EXACT
        };
        let millis = Columns {
            stamp_digits: 3,
            ..EXACT
        };
        let a = stamp("2024-03-01 10:00:05.678");
        assert!(seconds.same(&stamp("2024-03-01 10:00:06"), &millis, &a));
        assert!(!seconds.same(&stamp("2024-03-01 10:00:07"), &millis, &a));
        assert!(millis.same(&a, &millis, &stamp("2024-03-01T10:00:05.678")));
        assert!(millis.same(&a, &EXACT, &stamp("2024-03-01 10:00:05.678900")));
        assert!(!millis.same(&a, &millis, &stamp("2024-03-01 10:00:05.680")));
        assert!(!EXACT.same(&a, &EXACT, &stamp("2024-03-01 10:00:05.6781")));
    }

    #[test]
    fn decimals_are_written_in_three_forms() {
        assert_eq!(decimal_text(1250, 0), "12.5");
        assert_eq!(decimal_text(1250, 2), "12.50");
        assert_eq!(decimal_text(10_000, 0), "100");
        assert_eq!(decimal_text(10_000, 1), "100.0");
        assert_eq!(decimal_text(10_000, 2), "100.00");
        assert_eq!(decimal_text(10, 2), "0.10");
        assert_eq!(decimal_text(-325, 0), "-3.25");
        assert_eq!(decimal_text(-50, 1), "-0.5");
        assert_eq!(decimal_text(9_999_999_999, 0), "99999999.99");
    }
}
