//! The Legal entities map: legal entities (companies) from the ERP entity `CompanyInfo` to
//! the CRM table `cdm_companies`, one way.
//!
//! It follows the standard dual-write map "Legal entities (cdm_companies)":
//!
//! - `NAME` > `cdm_name` and `LEGALENTITYID` > `cdm_companycode`, copied from ERP to CRM
//!   only (`>`: one way).
//!
//! Both sides are keyed by the legal entity code alone (`LEGALENTITYID`,
//! `cdm_companycode`): this is the company table every company-striped map refers to, so
//! it is not striped itself. A change on the CRM side has no effect on the ERP (an empty
//! write list), deletes included. Only legal entities the config lists are synced.

mod config;
mod mapping;
#[cfg(test)]
mod tests;

use dualwrite_guest::{
    Change, ConfigError, Descriptor, Direction, FieldId, Host, MapPlugin, Outcome, Side, ValueKind,
};

use config::Config;
use mapping::{Carry, FieldDef, Line, Table};

/// Field ids of the ERP side (`CompanyInfo`), as `describe` declares them.
pub mod erp {
    use dualwrite_guest::FieldId;

    /// `LEGALENTITYID`: the legal entity (company) code (key).
    pub const LEGALENTITYID: FieldId = 0;
    /// `NAME`: the legal entity's name, text.
    pub const NAME: FieldId = 1;
}

/// Field ids of the CRM side (`cdm_companies`), as `describe` declares them.
pub mod crm {
    use dualwrite_guest::FieldId;

    /// `cdm_companycode`: the company code (key).
    pub const CDM_COMPANYCODE: FieldId = 0;
    /// `cdm_name`: the company's name, text.
    pub const CDM_NAME: FieldId = 1;
}

/// The ERP entity.
pub const ERP_ENTITY: &str = "CompanyInfo";
/// The CRM entity.
pub const CRM_ENTITY: &str = "cdm_companies";

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

static ERP_FIELDS: [FieldDef; 2] = [key("LEGALENTITYID"), field("NAME", ValueKind::Text)];

static CRM_FIELDS: [FieldDef; 2] = [key("cdm_companycode"), field("cdm_name", ValueKind::Text)];

const fn to_crm(erp: FieldId, crm: FieldId, carry: Carry) -> Line {
    Line {
        erp,
        crm,
        direction: Direction::ToCrm,
        carry,
    }
}

/// The 2 lines of the reference map, in its order.
static LINES: [Line; 2] = [
    to_crm(erp::NAME, crm::CDM_NAME, Carry::Copy),
    to_crm(erp::LEGALENTITYID, crm::CDM_COMPANYCODE, Carry::Key),
];

static TABLE: Table = Table {
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: erp::LEGALENTITYID,
    crm_key: crm::CDM_COMPANYCODE,
    lines: &LINES,
};

/// The Legal entities map plugin. Config: see `describe().config_schema`.
#[derive(Debug, Default)]
pub struct LegalEntities {
    config: Config,
}

impl MapPlugin for LegalEntities {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        self.config = Config::parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        let mut descriptor = Descriptor::new(
            "legal-entities",
            "1.0.0",
            "Syncs legal entities from the ERP CompanyInfo entity to CRM cdm_companies, one way (ERP to CRM).",
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
        if !self.config.syncs_company(key.code_text) {
            return Outcome::Filtered;
        }
        if change.is_delete() {
            TABLE.delete(change, &key)
        } else {
            TABLE.upsert(change, &key)
        }
    }
}

dualwrite_guest::export_plugin!(LegalEntities);
