//! The Terms of payment map: terms of payment between the ERP entity `PaymentTerms` and the
//! CRM table `msdyn_paymentterms`, both ways, per company.
//!
//! It follows the standard dual-write map "Terms of payment (msdyn_paymentterms)": 13
//! lines, all both ways, of which
//!
//! - plain copies: `DESCRIPTION`, `NAME` (the key), and the counts `NUMBEROFMONTHS`,
//!   `CUTOFFDAYOFMONTH` and `NUMBEROFDAYS` (integers);
//! - value maps: `ISCASHPAYMENT`, `ISCERTIFIEDCOMPANYCHECK` and `ISDEFAULTPAYMENTTERM`
//!   (`no`/`yes` <-> boolean), and `CREDITCARDPAYMENTTYPE`, `CREDITCARDCREDITCHECKTYPE`
//!   and `PAYMENTMETHODTYPE` (enum text <-> option set);
//! - two lookups whose target maps ("Payment days CDS", "Payment schedule") are not in
//!   the standard pack: `PAYMENTDAYNAME` and `PAYMENTSCHEDULENAME` are carried as plain
//!   text into the CRM lookup columns `msdyn_paymentdayname` and
//!   `msdyn_paymentschedulename` (no links to translate through).
//!
//! Both sides are keyed by (company, name); only companies the config lists are synced.

#[cfg(test)]
mod tests;

use dualwrite_guest::table::{
    Carry, CommonConfig, ConfigOptions, FieldDef, KeyFields, Line, Table, both, field, key,
};
use dualwrite_guest::{Change, ConfigError, Descriptor, Host, MapPlugin, Outcome, ValueKind};

use ValueKind::{Boolean, Integer, Text};

/// Field ids of the ERP side (`PaymentTerms`), as `describe` declares them.
pub mod erp {
    use dualwrite_guest::FieldId;

    /// `DATAAREAID`: the company code (key).
    pub const DATAAREAID: FieldId = 0;
    /// `NAME`: the terms of payment name (key).
    pub const NAME: FieldId = 1;
    /// `DESCRIPTION`: text.
    pub const DESCRIPTION: FieldId = 2;
    /// `NUMBEROFMONTHS`: an integer.
    pub const NUMBEROFMONTHS: FieldId = 3;
    /// `CUTOFFDAYOFMONTH`: an integer.
    pub const CUTOFFDAYOFMONTH: FieldId = 4;
    /// `ISCASHPAYMENT`: `no` or `yes`.
    pub const ISCASHPAYMENT: FieldId = 5;
    /// `NUMBEROFDAYS`: an integer.
    pub const NUMBEROFDAYS: FieldId = 6;
    /// `ISCERTIFIEDCOMPANYCHECK`: `no` or `yes`.
    pub const ISCERTIFIEDCOMPANYCHECK: FieldId = 7;
    /// `ISDEFAULTPAYMENTTERM`: `no` or `yes`.
    pub const ISDEFAULTPAYMENTTERM: FieldId = 8;
    /// `CREDITCARDPAYMENTTYPE`: `na` or `creditCard`.
    pub const CREDITCARDPAYMENTTYPE: FieldId = 9;
    /// `CREDITCARDCREDITCHECKTYPE`: `normal` or `byPass`.
    pub const CREDITCARDCREDITCHECKTYPE: FieldId = 10;
    /// `PAYMENTDAYNAME`: payment day name (carried as text).
    pub const PAYMENTDAYNAME: FieldId = 11;
    /// `PAYMENTMETHODTYPE`: `net`, `currentMth`, `currentQuart`, `currentYear`,
    /// `currentWeek`, `cod` or `cutOffDate`.
    pub const PAYMENTMETHODTYPE: FieldId = 12;
    /// `PAYMENTSCHEDULENAME`: payment schedule name (carried as text).
    pub const PAYMENTSCHEDULENAME: FieldId = 13;
}

/// Field ids of the CRM side (`msdyn_paymentterms`), as `describe` declares them.
pub mod crm {
    use dualwrite_guest::FieldId;

    /// `msdyn_company`: the company code (key).
    pub const MSDYN_COMPANY: FieldId = 0;
    /// `msdyn_name`: the terms of payment name (key).
    pub const MSDYN_NAME: FieldId = 1;
    /// `msdyn_description`: text.
    pub const MSDYN_DESCRIPTION: FieldId = 2;
    /// `msdyn_numberofmonth`: an integer.
    pub const MSDYN_NUMBEROFMONTH: FieldId = 3;
    /// `msdyn_cutoffdayofmonth`: an integer.
    pub const MSDYN_CUTOFFDAYOFMONTH: FieldId = 4;
    /// `msdyn_iscashpayment`: a boolean.
    pub const MSDYN_ISCASHPAYMENT: FieldId = 5;
    /// `msdyn_days`: an integer.
    pub const MSDYN_DAYS: FieldId = 6;
    /// `msdyn_iscertifiedcompanycheck`: a boolean.
    pub const MSDYN_ISCERTIFIEDCOMPANYCHECK: FieldId = 7;
    /// `msdyn_isdefaultpaymentterm`: a boolean.
    pub const MSDYN_ISDEFAULTPAYMENTTERM: FieldId = 8;
    /// `msdyn_creditcardpaymenttype`: option set `806380998..=806380999`.
    pub const MSDYN_CREDITCARDPAYMENTTYPE: FieldId = 9;
    /// `msdyn_creditcardcreditchecktype`: option set `806380000..=806380001`.
    pub const MSDYN_CREDITCARDCREDITCHECKTYPE: FieldId = 10;
    /// `msdyn_paymentdayname`: payment day name (text).
    pub const MSDYN_PAYMENTDAYNAME: FieldId = 11;
    /// `msdyn_paymentmethodtype`: option set `806380991..=806380997`.
    pub const MSDYN_PAYMENTMETHODTYPE: FieldId = 12;
    /// `msdyn_paymentschedulename`: payment schedule name (text).
    pub const MSDYN_PAYMENTSCHEDULENAME: FieldId = 13;
}

/// The ERP entity.
pub const ERP_ENTITY: &str = "PaymentTerms";
/// The CRM entity.
pub const CRM_ENTITY: &str = "msdyn_paymentterms";

/// `CREDITCARDPAYMENTTYPE` <-> `msdyn_creditcardpaymenttype`.
const CREDIT_CARD_PAYMENT_TYPE: [(&str, i64); 2] =
    [("na", 806_380_998), ("creditCard", 806_380_999)];

/// `CREDITCARDCREDITCHECKTYPE` <-> `msdyn_creditcardcreditchecktype`.
const CREDIT_CARD_CREDIT_CHECK_TYPE: [(&str, i64); 2] =
    [("normal", 806_380_000), ("byPass", 806_380_001)];

/// `PAYMENTMETHODTYPE` <-> `msdyn_paymentmethodtype`.
const PAYMENT_METHOD_TYPE: [(&str, i64); 7] = [
    ("net", 806_380_991),
    ("currentMth", 806_380_992),
    ("currentQuart", 806_380_993),
    ("currentYear", 806_380_994),
    ("currentWeek", 806_380_995),
    ("cod", 806_380_996),
    ("cutOffDate", 806_380_997),
];

static ERP_FIELDS: [FieldDef; 14] = [
    key("DATAAREAID"),
    key("NAME"),
    field("DESCRIPTION", Text),
    field("NUMBEROFMONTHS", Integer),
    field("CUTOFFDAYOFMONTH", Integer),
    field("ISCASHPAYMENT", Text),
    field("NUMBEROFDAYS", Integer),
    field("ISCERTIFIEDCOMPANYCHECK", Text),
    field("ISDEFAULTPAYMENTTERM", Text),
    field("CREDITCARDPAYMENTTYPE", Text),
    field("CREDITCARDCREDITCHECKTYPE", Text),
    field("PAYMENTDAYNAME", Text),
    field("PAYMENTMETHODTYPE", Text),
    field("PAYMENTSCHEDULENAME", Text),
];

static CRM_FIELDS: [FieldDef; 14] = [
    key("msdyn_company"),
    key("msdyn_name"),
    field("msdyn_description", Text),
    field("msdyn_numberofmonth", Integer),
    field("msdyn_cutoffdayofmonth", Integer),
    field("msdyn_iscashpayment", Boolean),
    field("msdyn_days", Integer),
    field("msdyn_iscertifiedcompanycheck", Boolean),
    field("msdyn_isdefaultpaymentterm", Boolean),
    field("msdyn_creditcardpaymenttype", Integer),
    field("msdyn_creditcardcreditchecktype", Integer),
    field("msdyn_paymentdayname", Text),
    field("msdyn_paymentmethodtype", Integer),
    field("msdyn_paymentschedulename", Text),
];

/// The 13 lines of the reference map, in its order.
static LINES: [Line; 13] = [
    both(erp::DESCRIPTION, crm::MSDYN_DESCRIPTION, Carry::Copy),
    both(erp::NAME, crm::MSDYN_NAME, Carry::Key),
    both(erp::NUMBEROFMONTHS, crm::MSDYN_NUMBEROFMONTH, Carry::Copy),
    both(
        erp::CUTOFFDAYOFMONTH,
        crm::MSDYN_CUTOFFDAYOFMONTH,
        Carry::Copy,
    ),
    both(erp::ISCASHPAYMENT, crm::MSDYN_ISCASHPAYMENT, Carry::YesNo),
    both(erp::NUMBEROFDAYS, crm::MSDYN_DAYS, Carry::Copy),
    both(
        erp::ISCERTIFIEDCOMPANYCHECK,
        crm::MSDYN_ISCERTIFIEDCOMPANYCHECK,
        Carry::YesNo,
    ),
    both(
        erp::ISDEFAULTPAYMENTTERM,
        crm::MSDYN_ISDEFAULTPAYMENTTERM,
        Carry::YesNo,
    ),
    both(
        erp::CREDITCARDPAYMENTTYPE,
        crm::MSDYN_CREDITCARDPAYMENTTYPE,
        Carry::OptionSet(&CREDIT_CARD_PAYMENT_TYPE),
    ),
    both(
        erp::CREDITCARDCREDITCHECKTYPE,
        crm::MSDYN_CREDITCARDCREDITCHECKTYPE,
        Carry::OptionSet(&CREDIT_CARD_CREDIT_CHECK_TYPE),
    ),
    // Lookups whose target maps are not in the standard pack have no links to translate
    // through: the key is carried as plain text into a CRM text column named after the
    // lookup column.
    both(
        erp::PAYMENTDAYNAME,
        crm::MSDYN_PAYMENTDAYNAME,
        Carry::Unlinked("Payment days CDS"),
    ),
    both(
        erp::PAYMENTMETHODTYPE,
        crm::MSDYN_PAYMENTMETHODTYPE,
        Carry::OptionSet(&PAYMENT_METHOD_TYPE),
    ),
    both(
        erp::PAYMENTSCHEDULENAME,
        crm::MSDYN_PAYMENTSCHEDULENAME,
        Carry::Unlinked("Payment schedule"),
    ),
];

static TABLE: Table = Table {
    erp_entity: ERP_ENTITY,
    crm_entity: CRM_ENTITY,
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: KeyFields::company_code(erp::DATAAREAID, erp::NAME),
    crm_key: KeyFields::company_code(crm::MSDYN_COMPANY, crm::MSDYN_NAME),
    lines: &LINES,
};

/// The config: which companies the map syncs, and `resolve_lookups` for uniformity with
/// the other maps. This map's two lookups refer to maps outside the standard pack and are
/// always carried as text ([`Carry::Unlinked`]), so `resolve_lookups` is checked but has
/// no effect; it is accepted so one config shape fits every map of the pack.
const OPTIONS: ConfigOptions = ConfigOptions {
    resolve_lookups: Some(
        "Accepted for uniformity with the other maps; no effect here: this map's lookups (PAYMENTDAYNAME, PAYMENTSCHEDULENAME) refer to maps outside the standard pack and are always copied as text.",
    ),
    ..ConfigOptions::STANDARD
};

/// The Terms of payment map plugin. Config: see `describe().config_schema`.
#[derive(Debug, Default)]
pub struct TermsOfPayment {
    config: CommonConfig,
}

impl MapPlugin for TermsOfPayment {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        self.config = OPTIONS.parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        TABLE
            .describe(Descriptor::new(
                "terms-of-payment",
                "1.0.0",
                "Syncs terms of payment between the ERP PaymentTerms entity and CRM msdyn_paymentterms, both ways, per company.",
            ))
            .config_schema(&OPTIONS.schema())
            .depends_on("legal-entities")
    }

    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
        TABLE.transform(change, host, &self.config)
    }
}

dualwrite_guest::export_plugin!(TermsOfPayment);
