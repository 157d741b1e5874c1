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

#[cfg(test)]
mod tests;

use dualwrite_guest::table::{
    Carry, CommonConfig, ConfigOptions, Constant, FieldDef, KeyFields, Line, Table, both, field,
    key, to_crm,
};
use dualwrite_guest::{Change, ConfigError, Descriptor, Host, MapPlugin, Outcome, Side, ValueKind};

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

/// The 4 lines of the reference map, in its order.
static LINES: [Line; 4] = [
    both(erp::CURRENCYCODE, crm::ISOCURRENCYCODE, Carry::Key),
    both(erp::NAME, crm::CURRENCYNAME, Carry::Copy),
    both(erp::SYMBOL, crm::CURRENCYSYMBOL, Carry::Copy),
    // `none >> exchangerate`: triggered by the currency code, so the constant is written
    // with the whole row (inserts, key changes, unknown changed fields) and not on
    // field-level updates. Described with its value (`constant 1.0000000000`).
    to_crm(
        erp::CURRENCYCODE,
        crm::EXCHANGERATE,
        Carry::ShownConstant(Constant::Decimal(EXCHANGE_RATE)),
    ),
];

static TABLE: Table = Table {
    erp_entity: ERP_ENTITY,
    crm_entity: CRM_ENTITY,
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: KeyFields::code(erp::CURRENCYCODE),
    crm_key: KeyFields::code(crm::ISOCURRENCYCODE),
    lines: &LINES,
};

/// The config: none. Currencies are shared by every company and the map has no lookups,
/// so only `{}` is accepted.
const OPTIONS: ConfigOptions = ConfigOptions {
    description: Some(
        "The currencies map has no options: currencies are not per company and the map has no lookups.",
    ),
    ..ConfigOptions::NONE
};

/// The Currencies map plugin. Config: see `describe().config_schema` (no options).
#[derive(Debug, Default)]
pub struct Currencies;

impl MapPlugin for Currencies {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        OPTIONS.parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        TABLE
            .describe(Descriptor::new(
                "currencies",
                "1.0.0",
                "Syncs currencies between the ERP Currencies entity and CRM transactioncurrencies, both ways, except ERP currency 999.",
            ))
            .config_schema(&OPTIONS.schema())
    }

    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
        let key = match TABLE.row_key(change) {
            Ok(key) => key,
            Err(failed) => return failed,
        };
        // Source filter ((CURRENCYCODE != "999")), ERP side only.
        if change.source == Side::Erp && key.code_text() == FILTERED_CURRENCY_CODE {
            return Outcome::Filtered;
        }
        // The config of `{}`; it allocates nothing.
        TABLE.carry(change, &key, host, &CommonConfig::new())
    }
}

dualwrite_guest::export_plugin!(Currencies);
