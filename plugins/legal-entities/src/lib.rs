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

#[cfg(test)]
mod tests;

use dualwrite_guest::table::{
    Carry, CommonConfig, ConfigOptions, FieldDef, KeyFields, Line, Table, field, key, to_crm,
};
use dualwrite_guest::{Change, ConfigError, Descriptor, Host, MapPlugin, Outcome, ValueKind};

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

static ERP_FIELDS: [FieldDef; 2] = [key("LEGALENTITYID"), field("NAME", ValueKind::Text)];

static CRM_FIELDS: [FieldDef; 2] = [key("cdm_companycode"), field("cdm_name", ValueKind::Text)];

/// The 2 lines of the reference map, in its order. The key line flows one way, so the
/// table carries nothing from CRM to ERP (deletes included).
static LINES: [Line; 2] = [
    to_crm(erp::NAME, crm::CDM_NAME, Carry::Copy),
    to_crm(erp::LEGALENTITYID, crm::CDM_COMPANYCODE, Carry::Key),
];

static TABLE: Table = Table {
    erp_entity: ERP_ENTITY,
    crm_entity: CRM_ENTITY,
    erp: &ERP_FIELDS,
    crm: &CRM_FIELDS,
    erp_key: KeyFields::code(erp::LEGALENTITYID),
    crm_key: KeyFields::code(crm::CDM_COMPANYCODE),
    lines: &LINES,
};

/// The config: which legal entities the map syncs. The map has no lookups, so no
/// `resolve_lookups`.
const OPTIONS: ConfigOptions = ConfigOptions {
    companies: Some(
        "Legal entity codes (LEGALENTITYID, cdm_companycode) this map syncs, compared ignoring ASCII case. Empty or absent: every legal entity.",
    ),
    ..ConfigOptions::NONE
};

/// The Legal entities map plugin. Config: see `describe().config_schema`.
#[derive(Debug, Default)]
pub struct LegalEntities {
    config: CommonConfig,
}

impl MapPlugin for LegalEntities {
    fn configure(&mut self, config: &str) -> Result<(), ConfigError> {
        self.config = OPTIONS.parse(config)?;
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        TABLE
            .describe(Descriptor::new(
                "legal-entities",
                "1.0.0",
                "Syncs legal entities from the ERP CompanyInfo entity to CRM cdm_companies, one way (ERP to CRM).",
            ))
            .config_schema(&OPTIONS.schema())
    }

    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome {
        let key = match TABLE.row_key(change) {
            Ok(key) => key,
            Err(failed) => return failed,
        };
        // The key is the legal entity (company) code itself.
        if !self.config.syncs_company(key.code_text()) {
            return Outcome::Filtered;
        }
        TABLE.carry(change, &key, host, &self.config)
    }
}

dualwrite_guest::export_plugin!(LegalEntities);
