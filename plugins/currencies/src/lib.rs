//! The Currencies map: currencies between the ERP entity `Currencies` and the CRM table
//! `transactioncurrencies`, both ways.
//!
//! It follows the standard dual-write map "Currencies (transactioncurrencies)":
//!
//! - `CURRENCYCODE` <-> `isocurrencycode`, `NAME` <-> `currencyname` and `SYMBOL` <->
//!   `currencysymbol`, copied both ways;
//! - `none >> exchangerate`: ERP -> CRM writes the constant exchange rate
//!   `1.0000000000` (an exact decimal) whenever it writes the whole row (an insert, or an
//!   update that changed the currency code or whose changed fields are unknown), so a
//!   new CRM currency always has one; field-level updates leave it alone.
//!
//! Filter: the reference's source filter `((CURRENCYCODE != "999"))`: ERP changes of
//! currency `999` are filtered. The reference has no reversed filter, so CRM changes are
//! not filtered. Currencies are shared by all companies: the key is the currency code
//! alone, and the map has no config options.

mod config;
mod mapping;
#[cfg(test)]
mod tests;

use dualwrite_guest::{
    Change, ConfigError, Descriptor, Direction, FieldId, Host, MapPlugin, Outcome, Side, ValueKind,
};

use config::Config;
use mapping::{Carry, Constant, FieldDef, Line, Table};

/// Field ids of the ERP side (`Currencies`), as `describe` declares them.
pub mod erp {
    use dualwrite_guest::FieldId;

    /// `CURRENCYCODE`: the currency code (key).
    pub const CURRENCYCODE: FieldId = 0;
    /// `NAME`: the currency's name, text.
    pub const NAME: FieldId = 1;
    /// `SYMBOL`: the currency symbol, text.
    pub const SYMBOL: FieldId = 2;
}

/// Field ids of the CRM side (`transactioncurrencies`), as `describe` declares them.
pub mod crm {
    use dualwrite_guest::FieldId;

    /// `isocurrencycode`: the currency code (key).
    pub const ISOCURRENCYCODE: FieldId = 0;
    /// `currencyname`: text.
    pub const CURRENCYNAME: FieldId = 1;
    /// `currencysymbol`: text.
    pub const CURRENCYSYMBOL: FieldId = 2;
    /// `exchangerate`: a decimal; written as the constant [`super::EXCHANGE_RATE`].
    pub const EXCHANGERATE: FieldId = 3;
}

/// The ERP entity.
pub const ERP_ENTITY: &str = "Currencies";
/// The CRM entity.
pub const CRM_ENTITY: &str = "transactioncurrencies";

/// The exchange rate ERP -> CRM writes (the reference's default value).
pub const EXCHANGE_RATE: &str = "1.0000000000";

/// `CURRENCYCODE` of the ERP changes the source filter excludes.
const FILTERED_CURRENCY_CODE: &str = "999";

const fn field(name: &'static str, kind: ValueKind) -> FieldDef {
    FieldDef {
        name,
        kind,
        key: false,
    }
}

const fn key(name: &'static str) -> FieldDef {
    FieldDef {
        name,
        kind: ValueKind::Text,
        key: true,
    }
}

static ERP_FIELDS: [FieldDef; 3] = [
    key("CURRENCYCODE"),
    field("NAME", ValueKind::Text),
    field("SYMBOL", ValueKind::Text),
];

static CRM_FIELDS: [FieldDef; 4] = [
    key("isocurrencycode"),
    field("currencyname", ValueKind::Text),
    field("currencysymbol", ValueKind::Text),
    field("exchangerate", ValueKind::Decimal),
];

const fn both(erp: FieldId, crm: FieldId, carry: Carry) -> Line {
    Line {
        erp,
        crm,
        direction: Direction::Both,
        carry,
    }
}

/// The 4 lines of the reference map, in its order.
static LINES: [Line; 4] = [
    both(erp::CURRENCYCODE, crm::ISOCURRENCYCODE, Carry::Key),
    both(erp::NAME, crm::CURRENCYNAME, Carry::Copy),
    both(erp::SYMBOL, crm::CURRENCYSYMBOL, Carry::Copy),
    // `none >> exchangerate`: triggered by the currency code, so the constant is written
    // with the whole row (inserts, key changes, unknown changed fields) and not on
    // field-level updates.
    Line {
        erp: erp::CURRENCYCODE,
        crm: crm::EXCHANGERATE,
        direction: Direction::ToCrm,
        carry: Carry::Constant(Constant::Decimal(EXCHANGE_RATE)),
    },
];

static TABLE: Table = Table {
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: erp::CURRENCYCODE,
    crm_key: crm::ISOCURRENCYCODE,
    lines: &LINES,
};

/// The Currencies map plugin. Config: see `describe().config_schema` (no options).
#[derive(Debug, Default)]
pub struct Currencies;

impl MapPlugin for Currencies {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        Config::parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        let mut descriptor = Descriptor::new(
            "currencies",
            "1.0.0",
            "Syncs currencies between the ERP Currencies entity and CRM transactioncurrencies, both ways, except ERP currency 999.",
        )
        .erp(TABLE.entity_spec(Side::Erp, ERP_ENTITY))
        .crm(TABLE.entity_spec(Side::Crm, CRM_ENTITY))
        .config_schema(config::SCHEMA);
        descriptor.mappings = TABLE.mappings();
        descriptor
    }

    fn transform(&self, change: &Change, _host: &dyn Host) -> Outcome {
        let key = match TABLE.row_key(change) {
            Ok(key) => key,
            Err(failed) => return failed,
        };
        // Source filter ((CURRENCYCODE != "999")), ERP side only.
        if change.source == Side::Erp && key.code_text == FILTERED_CURRENCY_CODE {
            return Outcome::Filtered;
        }
        if change.is_delete() {
            TABLE.delete(change, &key)
        } else {
            TABLE.upsert(change, &key)
        }
    }
}

dualwrite_guest::export_plugin!(Currencies);
