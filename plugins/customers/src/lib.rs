//! The Customers V3 map: organization customers between the ERP entity
//! `CustCustomerV3Entity` and the CRM table `accounts`, both ways, per company.
//!
//! It follows the standard dual-write map "Customers V3 (accounts)": 25 lines, of which
//!
//! - plain copies (credit limit as an exact decimal, sales memo, credit rating, ...);
//! - value maps: `CREDITLIMITISMANDATORY` and `ISONETIMECUSTOMER` (`no`/`yes` <-> boolean)
//!   and `ONHOLDSTATUS` (text <-> option set `806380000..=806380005`);
//! - lookups translated through the engine's links: sales currency, customer group, terms
//!   of payment, vendor, and the invoice account (a customer of this same map; a customer
//!   that is its own invoice account needs no link);
//! - lookups whose target maps are outside the standard pack (payment day, payment method,
//!   payment schedule, party, contact person, sales tax group), carried as plain text into
//!   CRM columns named after the lookup column;
//! - constants: ERP -> CRM writes `customertypecode = 3`, CRM -> ERP writes
//!   `PARTYTYPE = "Organization"`.
//!
//! Filters: ERP rows only when `PARTYTYPE` is `Organization`, CRM rows only when
//! `customertypecode` is 3 (persons are the contacts map's job), and only companies the
//! config lists. Both sides are keyed by (company, account number).

#[cfg(test)]
mod tests;

use dualwrite_guest::table::{
    Carry, CommonConfig, ConfigOptions, Constant, FieldDef, KeyFields, Line, Table, Target, both,
    field, key, to_crm, to_erp,
};
use dualwrite_guest::{
    Change, ConfigError, Descriptor, Host, MapPlugin, Outcome, Side, Value, ValueKind,
};

use ValueKind::{Boolean, Decimal, Integer, Text};

/// Field ids of the ERP side (`CustCustomerV3Entity`), as `describe` declares them.
pub mod erp {
    use dualwrite_guest::FieldId;

    /// `DATAAREAID`: the company code (key).
    pub const DATAAREAID: FieldId = 0;
    /// `CUSTOMERACCOUNT`: the customer account number (key).
    pub const CUSTOMERACCOUNT: FieldId = 1;
    /// `CREDITLIMIT`: credit limit, a decimal.
    pub const CREDITLIMIT: FieldId = 2;
    /// `SALESCURRENCYCODE`: currency code (lookup to Currencies).
    pub const SALESCURRENCYCODE: FieldId = 3;
    /// `SALESMEMO`: free text.
    pub const SALESMEMO: FieldId = 4;
    /// `CREDITLIMITISMANDATORY`: `no` or `yes`.
    pub const CREDITLIMITISMANDATORY: FieldId = 5;
    /// `CREDITRATING`: text.
    pub const CREDITRATING: FieldId = 6;
    /// `CUSTOMERGROUPID`: customer group (lookup to Customer groups).
    pub const CUSTOMERGROUPID: FieldId = 7;
    /// `IDENTIFICATIONNUMBER`: text.
    pub const IDENTIFICATIONNUMBER: FieldId = 8;
    /// `INVOICEACCOUNT`: invoice customer account (lookup to this map).
    pub const INVOICEACCOUNT: FieldId = 9;
    /// `ISONETIMECUSTOMER`: `no` or `yes`.
    pub const ISONETIMECUSTOMER: FieldId = 10;
    /// `ONHOLDSTATUS`: `no`, `invoice`, `all`, `payment`, `requisition` or `never`.
    pub const ONHOLDSTATUS: FieldId = 11;
    /// `PARTYCOUNTRY`: text.
    pub const PARTYCOUNTRY: FieldId = 12;
    /// `PARTYSTATE`: text.
    pub const PARTYSTATE: FieldId = 13;
    /// `PAYMENTDAY`: payment day name (carried as text).
    pub const PAYMENTDAY: FieldId = 14;
    /// `PAYMENTMETHOD`: payment method name (carried as text).
    pub const PAYMENTMETHOD: FieldId = 15;
    /// `PAYMENTSCHEDULE`: payment schedule name (carried as text).
    pub const PAYMENTSCHEDULE: FieldId = 16;
    /// `PAYMENTTERMS`: terms of payment (lookup to Terms of payment).
    pub const PAYMENTTERMS: FieldId = 17;
    /// `PAYMENTTERMSBASEDAYS`: an integer.
    pub const PAYMENTTERMSBASEDAYS: FieldId = 18;
    /// `TAXEXEMPTNUMBER`: text.
    pub const TAXEXEMPTNUMBER: FieldId = 19;
    /// `VENDORACCOUNT`: vendor account (lookup to Vendors V2).
    pub const VENDORACCOUNT: FieldId = 20;
    /// `PARTYTYPE`: `Organization` or `Person`; read by the filter, written as a constant.
    pub const PARTYTYPE: FieldId = 21;
    /// `PARTYNUMBER`: party number (carried as text).
    pub const PARTYNUMBER: FieldId = 22;
    /// `CONTACTPERSONID`: primary contact (carried as text).
    pub const CONTACTPERSONID: FieldId = 23;
    /// `SALESTAXGROUP`: sales tax group (carried as text).
    pub const SALESTAXGROUP: FieldId = 24;
}

/// Field ids of the CRM side (`accounts`), as `describe` declares them.
pub mod crm {
    use dualwrite_guest::FieldId;

    /// `msdyn_company`: the company code (key).
    pub const MSDYN_COMPANY: FieldId = 0;
    /// `accountnumber`: the customer account number (key).
    pub const ACCOUNTNUMBER: FieldId = 1;
    /// `creditlimit`: a decimal.
    pub const CREDITLIMIT: FieldId = 2;
    /// `transactioncurrencyid`: ISO currency code of the linked currency.
    pub const TRANSACTIONCURRENCYID: FieldId = 3;
    /// `description`: free text.
    pub const DESCRIPTION: FieldId = 4;
    /// `msdyn_creditlimitismandatory`: a boolean.
    pub const MSDYN_CREDITLIMITISMANDATORY: FieldId = 5;
    /// `msdyn_creditrating`: text.
    pub const MSDYN_CREDITRATING: FieldId = 6;
    /// `msdyn_customergroupid`: group id of the linked customer group.
    pub const MSDYN_CUSTOMERGROUPID: FieldId = 7;
    /// `msdyn_identificationnumber`: text.
    pub const MSDYN_IDENTIFICATIONNUMBER: FieldId = 8;
    /// `msdyn_billingaccount`: account number of the linked invoice account.
    pub const MSDYN_BILLINGACCOUNT: FieldId = 9;
    /// `msdyn_onetimecustomer`: a boolean.
    pub const MSDYN_ONETIMECUSTOMER: FieldId = 10;
    /// `msdyn_onholdstatus`: option set `806380000..=806380005`.
    pub const MSDYN_ONHOLDSTATUS: FieldId = 11;
    /// `msdyn_partycountry`: text.
    pub const MSDYN_PARTYCOUNTRY: FieldId = 12;
    /// `msdyn_partystateprovince`: text.
    pub const MSDYN_PARTYSTATEPROVINCE: FieldId = 13;
    /// `msdyn_paymentday`: payment day name (text).
    pub const MSDYN_PAYMENTDAY: FieldId = 14;
    /// `msdyn_customerpaymentmethod`: payment method name (text).
    pub const MSDYN_CUSTOMERPAYMENTMETHOD: FieldId = 15;
    /// `msdyn_paymentschedule`: payment schedule name (text).
    pub const MSDYN_PAYMENTSCHEDULE: FieldId = 16;
    /// `msdyn_paymentterm`: name of the linked terms of payment.
    pub const MSDYN_PAYMENTTERM: FieldId = 17;
    /// `msdyn_paymenttermsbasedays`: an integer.
    pub const MSDYN_PAYMENTTERMSBASEDAYS: FieldId = 18;
    /// `msdyn_taxexemptnumber`: text.
    pub const MSDYN_TAXEXEMPTNUMBER: FieldId = 19;
    /// `msdyn_vendor`: vendor account number of the linked vendor.
    pub const MSDYN_VENDOR: FieldId = 20;
    /// `customertypecode`: 3 for customers; read by the filter, written as a constant.
    pub const CUSTOMERTYPECODE: FieldId = 21;
    /// `msdyn_partyid`: party number (text).
    pub const MSDYN_PARTYID: FieldId = 22;
    /// `msdyn_primarycontact`: contact person id (text).
    pub const MSDYN_PRIMARYCONTACT: FieldId = 23;
    /// `msdyn_salestaxgroup`: sales tax group (text).
    pub const MSDYN_SALESTAXGROUP: FieldId = 24;
}

/// The ERP entity.
pub const ERP_ENTITY: &str = "CustCustomerV3Entity";
/// The CRM entity.
pub const CRM_ENTITY: &str = "accounts";

/// `PARTYTYPE` of the customers this map carries.
const ORGANIZATION: &str = "Organization";
/// `customertypecode` of the accounts this map carries.
const CUSTOMER_TYPE_CODE: i64 = 3;

/// `ONHOLDSTATUS` <-> `msdyn_onholdstatus`.
const ON_HOLD_STATUS: [(&str, i64); 6] = [
    ("no", 806_380_000),
    ("invoice", 806_380_001),
    ("all", 806_380_002),
    ("payment", 806_380_003),
    ("requisition", 806_380_004),
    ("never", 806_380_005),
];

static ERP_FIELDS: [FieldDef; 25] = [
    key("DATAAREAID"),
    key("CUSTOMERACCOUNT"),
    field("CREDITLIMIT", Decimal),
    field("SALESCURRENCYCODE", Text),
    field("SALESMEMO", Text),
    field("CREDITLIMITISMANDATORY", Text),
    field("CREDITRATING", Text),
    field("CUSTOMERGROUPID", Text),
    field("IDENTIFICATIONNUMBER", Text),
    field("INVOICEACCOUNT", Text),
    field("ISONETIMECUSTOMER", Text),
    field("ONHOLDSTATUS", Text),
    field("PARTYCOUNTRY", Text),
    field("PARTYSTATE", Text),
    field("PAYMENTDAY", Text),
    field("PAYMENTMETHOD", Text),
    field("PAYMENTSCHEDULE", Text),
    field("PAYMENTTERMS", Text),
    field("PAYMENTTERMSBASEDAYS", Integer),
    field("TAXEXEMPTNUMBER", Text),
    field("VENDORACCOUNT", Text),
    field("PARTYTYPE", Text),
    field("PARTYNUMBER", Text),
    field("CONTACTPERSONID", Text),
    field("SALESTAXGROUP", Text),
];

static CRM_FIELDS: [FieldDef; 25] = [
    key("msdyn_company"),
    key("accountnumber"),
    field("creditlimit", Decimal),
    field("transactioncurrencyid", Text),
    field("description", Text),
    field("msdyn_creditlimitismandatory", Boolean),
    field("msdyn_creditrating", Text),
    field("msdyn_customergroupid", Text),
    field("msdyn_identificationnumber", Text),
    field("msdyn_billingaccount", Text),
    field("msdyn_onetimecustomer", Boolean),
    field("msdyn_onholdstatus", Integer),
    field("msdyn_partycountry", Text),
    field("msdyn_partystateprovince", Text),
    field("msdyn_paymentday", Text),
    field("msdyn_customerpaymentmethod", Text),
    field("msdyn_paymentschedule", Text),
    field("msdyn_paymentterm", Text),
    field("msdyn_paymenttermsbasedays", Integer),
    field("msdyn_taxexemptnumber", Text),
    field("msdyn_vendor", Text),
    field("customertypecode", Integer),
    field("msdyn_partyid", Text),
    field("msdyn_primarycontact", Text),
    field("msdyn_salestaxgroup", Text),
];

static CURRENCIES: Target = Target {
    what: "currency",
    erp_entity: "Currencies",
    crm_entity: "transactioncurrencies",
    per_company: false,
};

static CUSTOMER_GROUPS: Target = Target {
    what: "customer group",
    erp_entity: "CustCustomerGroup",
    crm_entity: "msdyn_customergroups",
    per_company: true,
};

static TERMS_OF_PAYMENT: Target = Target {
    what: "terms of payment",
    erp_entity: "PaymentTerms",
    crm_entity: "msdyn_paymentterms",
    per_company: true,
};

static VENDORS: Target = Target {
    what: "vendor",
    erp_entity: "VendVendorV2Entity",
    crm_entity: "msdyn_vendors",
    per_company: true,
};

static CUSTOMERS: Target = Target {
    what: "invoice account",
    erp_entity: ERP_ENTITY,
    crm_entity: CRM_ENTITY,
    per_company: true,
};

/// `SALESMEMO` <-> `description`. The `previous-version` feature builds the plugin as
/// it was in 0.9.0, when the sales memo only flowed from ERP to CRM: a second, older
/// build that tests and demos compare against (`dualwrite replay --against`).
#[cfg(not(feature = "previous-version"))]
const SALES_MEMO: Line = both(erp::SALESMEMO, crm::DESCRIPTION, Carry::Copy);
#[cfg(feature = "previous-version")]
const SALES_MEMO: Line = to_crm(erp::SALESMEMO, crm::DESCRIPTION, Carry::Copy);

/// The plugin's version; see [`SALES_MEMO`].
const VERSION: &str = if cfg!(feature = "previous-version") {
    "0.9.0"
} else {
    "1.0.0"
};

/// The 25 lines of the reference map, in its order.
static LINES: [Line; 25] = [
    both(erp::CUSTOMERACCOUNT, crm::ACCOUNTNUMBER, Carry::Key),
    both(erp::CREDITLIMIT, crm::CREDITLIMIT, Carry::Copy),
    both(
        erp::SALESCURRENCYCODE,
        crm::TRANSACTIONCURRENCYID,
        Carry::Lookup(&CURRENCIES),
    ),
    SALES_MEMO,
    both(
        erp::CREDITLIMITISMANDATORY,
        crm::MSDYN_CREDITLIMITISMANDATORY,
        Carry::YesNo,
    ),
    both(erp::CREDITRATING, crm::MSDYN_CREDITRATING, Carry::Copy),
    both(
        erp::CUSTOMERGROUPID,
        crm::MSDYN_CUSTOMERGROUPID,
        Carry::Lookup(&CUSTOMER_GROUPS),
    ),
    both(
        erp::IDENTIFICATIONNUMBER,
        crm::MSDYN_IDENTIFICATIONNUMBER,
        Carry::Copy,
    ),
    both(
        erp::INVOICEACCOUNT,
        crm::MSDYN_BILLINGACCOUNT,
        Carry::OwnLookup(&CUSTOMERS),
    ),
    both(
        erp::ISONETIMECUSTOMER,
        crm::MSDYN_ONETIMECUSTOMER,
        Carry::YesNo,
    ),
    both(
        erp::ONHOLDSTATUS,
        crm::MSDYN_ONHOLDSTATUS,
        Carry::OptionSet(&ON_HOLD_STATUS),
    ),
    both(erp::PARTYCOUNTRY, crm::MSDYN_PARTYCOUNTRY, Carry::Copy),
    both(erp::PARTYSTATE, crm::MSDYN_PARTYSTATEPROVINCE, Carry::Copy),
    // Lookups whose target maps are not in the standard pack have no links to translate
    // through: the key is carried as plain text into a CRM text column named after the
    // lookup column.
    both(
        erp::PAYMENTDAY,
        crm::MSDYN_PAYMENTDAY,
        Carry::Unlinked("Payment days CDS"),
    ),
    both(
        erp::PAYMENTMETHOD,
        crm::MSDYN_CUSTOMERPAYMENTMETHOD,
        Carry::Unlinked("Customer payment method"),
    ),
    both(
        erp::PAYMENTSCHEDULE,
        crm::MSDYN_PAYMENTSCHEDULE,
        Carry::Unlinked("Payment schedule"),
    ),
    both(
        erp::PAYMENTTERMS,
        crm::MSDYN_PAYMENTTERM,
        Carry::Lookup(&TERMS_OF_PAYMENT),
    ),
    both(
        erp::PAYMENTTERMSBASEDAYS,
        crm::MSDYN_PAYMENTTERMSBASEDAYS,
        Carry::Copy,
    ),
    both(
        erp::TAXEXEMPTNUMBER,
        crm::MSDYN_TAXEXEMPTNUMBER,
        Carry::Copy,
    ),
    both(
        erp::VENDORACCOUNT,
        crm::MSDYN_VENDOR,
        Carry::Lookup(&VENDORS),
    ),
    // `none >> customertypecode`: the constant is (re)written whenever PARTYTYPE, the
    // ERP filter field, may have changed, since the row may have just entered the filter.
    to_crm(
        erp::PARTYTYPE,
        crm::CUSTOMERTYPECODE,
        Carry::Constant(Constant::Integer(CUSTOMER_TYPE_CODE)),
    ),
    // `PARTYTYPE << none`: likewise, triggered by the CRM filter field.
    to_erp(
        erp::PARTYTYPE,
        crm::CUSTOMERTYPECODE,
        Carry::Constant(Constant::Text(ORGANIZATION)),
    ),
    both(
        erp::PARTYNUMBER,
        crm::MSDYN_PARTYID,
        Carry::Unlinked("CDS Parties"),
    ),
    both(
        erp::CONTACTPERSONID,
        crm::MSDYN_PRIMARYCONTACT,
        Carry::Unlinked("Contacts V2"),
    ),
    both(
        erp::SALESTAXGROUP,
        crm::MSDYN_SALESTAXGROUP,
        Carry::Unlinked("Sales tax groups"),
    ),
];

static TABLE: Table = Table {
    erp_entity: ERP_ENTITY,
    crm_entity: CRM_ENTITY,
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: KeyFields::company_code(erp::DATAAREAID, erp::CUSTOMERACCOUNT),
    crm_key: KeyFields::company_code(crm::MSDYN_COMPANY, crm::ACCOUNTNUMBER),
    lines: &LINES,
};

/// The config: which companies the map syncs and whether lookups are translated.
const OPTIONS: ConfigOptions = ConfigOptions::STANDARD;

/// The Customers V3 (accounts) map plugin. Config: see `describe().config_schema`.
#[derive(Debug, Default)]
pub struct Customers {
    config: CommonConfig,
}

impl Customers {
    /// Whether the row is an organization customer: ERP `PARTYTYPE == "Organization"`,
    /// CRM `customertypecode == 3`. A delete whose old row is unknown (null filter field)
    /// passes, since deleting a row that is not there is harmless.
    fn is_organization(change: &Change) -> Result<bool, Outcome> {
        let (id, value) = match change.source {
            Side::Erp => (erp::PARTYTYPE, change.get(erp::PARTYTYPE)),
            Side::Crm => (crm::CUSTOMERTYPECODE, change.get(crm::CUSTOMERTYPECODE)),
        };
        match (change.source, value) {
            (_, Value::Null) => Ok(change.is_delete()),
            (Side::Erp, Value::Text(party_type)) => {
                Ok(party_type.eq_ignore_ascii_case(ORGANIZATION))
            }
            (Side::Crm, Value::Integer(code)) => Ok(*code == CUSTOMER_TYPE_CODE),
            (side, other) => Err(TABLE.wrong_kind(side, id, other)),
        }
    }
}

impl MapPlugin for Customers {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        self.config = OPTIONS.parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        let mut descriptor = TABLE
            .describe(Descriptor::new(
                "customers",
                VERSION,
                "Syncs organization customers between the ERP Customers V3 entity and CRM accounts, both ways, per company.",
            ))
            .config_schema(&OPTIONS.schema());
        for map in [
            "legal-entities",
            "currencies",
            "customer-groups",
            "terms-of-payment",
            "vendors",
        ] {
            descriptor = descriptor.depends_on(map);
        }
        descriptor
    }

    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
        let key = match TABLE.row_key(change) {
            Ok(key) => key,
            Err(failed) => return failed,
        };
        if !self.config.syncs(&key) {
            return Outcome::Filtered;
        }
        match Self::is_organization(change) {
            Ok(true) => {}
            Ok(false) => return Outcome::Filtered,
            Err(failed) => return failed,
        }
        if change.is_delete() {
            TABLE.delete(change, &key)
        } else {
            let filter_field = match change.source {
                Side::Erp => erp::PARTYTYPE,
                Side::Crm => crm::CUSTOMERTYPECODE,
            };
            // An update of the filter field may have just brought the row into the
            // filter: the other side gets the whole row.
            TABLE.upsert(
                change,
                &key,
                host,
                &self.config,
                change.touches(filter_field),
            )
        }
    }
}

dualwrite_guest::export_plugin!(Customers);
