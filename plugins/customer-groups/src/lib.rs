//! The Customer groups map: customer groups between the ERP entity `CustCustomerGroup`
//! and the CRM table `msdyn_customergroups`, both ways, per company.
//!
//! It follows the standard dual-write map "Customer groups (msdyn_customergroups)":
//!
//! - `CUSTOMERGROUPID` <-> `msdyn_groupid` and `DESCRIPTION` <-> `msdyn_description`,
//!   copied;
//! - `ISSALESTAXINCLUDEDINPRICE` (`no`/`yes`) <-> `msdyn_issalestaxincludedinprice`
//!   (boolean), a value map;
//! - `PAYMENTTERMID` <-> `msdyn_paymenttermid` and `CLEARINGPERIODPAYMENTTERMNAME` <->
//!   `msdyn_clearingperiodpaymenttermname`, lookups to the terms of payment map,
//!   translated through the engine's links.
//!
//! Both sides are keyed by (company, group id); only companies the config lists are
//! synced.

#[cfg(test)]
mod tests;

use dualwrite_guest::table::{
    Carry, CommonConfig, ConfigOptions, FieldDef, KeyFields, Line, Table, Target, both, field, key,
};
use dualwrite_guest::{Change, ConfigError, Descriptor, Host, MapPlugin, Outcome, ValueKind};

/// Field ids of the ERP side (`CustCustomerGroup`), as `describe` declares them.
pub mod erp {
    use dualwrite_guest::FieldId;

    /// `DATAAREAID`: the company code (key).
    pub const DATAAREAID: FieldId = 0;
    /// `CUSTOMERGROUPID`: the group id (key).
    pub const CUSTOMERGROUPID: FieldId = 1;
    /// `DESCRIPTION`: text.
    pub const DESCRIPTION: FieldId = 2;
    /// `ISSALESTAXINCLUDEDINPRICE`: `no` or `yes`.
    pub const ISSALESTAXINCLUDEDINPRICE: FieldId = 3;
    /// `PAYMENTTERMID`: terms of payment name (lookup).
    pub const PAYMENTTERMID: FieldId = 4;
    /// `CLEARINGPERIODPAYMENTTERMNAME`: terms of payment name (lookup).
    pub const CLEARINGPERIODPAYMENTTERMNAME: FieldId = 5;
}

/// Field ids of the CRM side (`msdyn_customergroups`), as `describe` declares them.
pub mod crm {
    use dualwrite_guest::FieldId;

    /// `msdyn_company`: the company code (key).
    pub const MSDYN_COMPANY: FieldId = 0;
    /// `msdyn_groupid`: the group id (key).
    pub const MSDYN_GROUPID: FieldId = 1;
    /// `msdyn_description`: text.
    pub const MSDYN_DESCRIPTION: FieldId = 2;
    /// `msdyn_issalestaxincludedinprice`: a boolean.
    pub const MSDYN_ISSALESTAXINCLUDEDINPRICE: FieldId = 3;
    /// `msdyn_paymenttermid`: name of the linked terms of payment.
    pub const MSDYN_PAYMENTTERMID: FieldId = 4;
    /// `msdyn_clearingperiodpaymenttermname`: name of the linked terms of payment.
    pub const MSDYN_CLEARINGPERIODPAYMENTTERMNAME: FieldId = 5;
}

/// The ERP entity.
pub const ERP_ENTITY: &str = "CustCustomerGroup";
/// The CRM entity.
pub const CRM_ENTITY: &str = "msdyn_customergroups";

static ERP_FIELDS: [FieldDef; 6] = [
    key("DATAAREAID"),
    key("CUSTOMERGROUPID"),
    field("DESCRIPTION", ValueKind::Text),
    field("ISSALESTAXINCLUDEDINPRICE", ValueKind::Text),
    field("PAYMENTTERMID", ValueKind::Text),
    field("CLEARINGPERIODPAYMENTTERMNAME", ValueKind::Text),
];

static CRM_FIELDS: [FieldDef; 6] = [
    key("msdyn_company"),
    key("msdyn_groupid"),
    field("msdyn_description", ValueKind::Text),
    field("msdyn_issalestaxincludedinprice", ValueKind::Boolean),
    field("msdyn_paymenttermid", ValueKind::Text),
    field("msdyn_clearingperiodpaymenttermname", ValueKind::Text),
];

static TERMS_OF_PAYMENT: Target = Target {
    what: "terms of payment",
    erp_entity: "PaymentTerms",
    crm_entity: "msdyn_paymentterms",
    per_company: true,
};

/// The 5 lines of the reference map, in its order.
static LINES: [Line; 5] = [
    both(erp::CUSTOMERGROUPID, crm::MSDYN_GROUPID, Carry::Key),
    both(erp::DESCRIPTION, crm::MSDYN_DESCRIPTION, Carry::Copy),
    both(
        erp::ISSALESTAXINCLUDEDINPRICE,
        crm::MSDYN_ISSALESTAXINCLUDEDINPRICE,
        Carry::YesNo,
    ),
    both(
        erp::PAYMENTTERMID,
        crm::MSDYN_PAYMENTTERMID,
        Carry::Lookup(&TERMS_OF_PAYMENT),
    ),
    both(
        erp::CLEARINGPERIODPAYMENTTERMNAME,
        crm::MSDYN_CLEARINGPERIODPAYMENTTERMNAME,
        Carry::Lookup(&TERMS_OF_PAYMENT),
    ),
];

static TABLE: Table = Table {
    erp_entity: ERP_ENTITY,
    crm_entity: CRM_ENTITY,
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: KeyFields::company_code(erp::DATAAREAID, erp::CUSTOMERGROUPID),
    crm_key: KeyFields::company_code(crm::MSDYN_COMPANY, crm::MSDYN_GROUPID),
    lines: &LINES,
};

/// The config: which companies the map syncs and whether lookups are translated.
const OPTIONS: ConfigOptions = ConfigOptions::STANDARD;

/// The Customer groups map plugin. Config: see `describe().config_schema`.
#[derive(Debug, Default)]
pub struct CustomerGroups {
    config: CommonConfig,
}

impl MapPlugin for CustomerGroups {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        self.config = OPTIONS.parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        TABLE
            .describe(Descriptor::new(
                "customer-groups",
                "1.0.0",
                "Syncs customer groups between the ERP CustCustomerGroup entity and CRM msdyn_customergroups, both ways, per company.",
            ))
            .config_schema(&OPTIONS.schema())
            .depends_on("terms-of-payment")
            .depends_on("legal-entities")
    }

    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
        TABLE.transform(change, host, &self.config)
    }
}

dualwrite_guest::export_plugin!(CustomerGroups);
