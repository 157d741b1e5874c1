//! The customer-groups map's tables on SQLite, as the end-to-end tests make them: the
//! ERP's `CustCustomerGroup` and the CRM's `msdyn_customergroups`, each keyed by company
//! and group.

/// The ERP table.
pub const ERP_TABLE: &str = "CREATE TABLE CustCustomerGroup (
    DATAAREAID TEXT NOT NULL, CUSTOMERGROUPID TEXT NOT NULL, DESCRIPTION TEXT,
    ISSALESTAXINCLUDEDINPRICE TEXT, PAYMENTTERMID TEXT, CLEARINGPERIODPAYMENTTERMNAME TEXT,
    PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))";

/// The CRM table.
pub const CRM_TABLE: &str = "CREATE TABLE msdyn_customergroups (
    msdyn_company TEXT NOT NULL, msdyn_groupid TEXT NOT NULL, msdyn_description TEXT,
    msdyn_issalestaxincludedinprice BOOLEAN, msdyn_paymenttermid TEXT,
    msdyn_clearingperiodpaymenttermname TEXT,
    PRIMARY KEY (msdyn_company, msdyn_groupid))";

/// The map's `[maps.customer-groups]` entities, keys and conflict policy (ERP wins), for
/// a config file.
pub const MAP_ENDPOINTS: &str = r#"erp = { side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }
crm = { side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }
conflict = { policy = "side-wins", winner = "erp" }"#;
