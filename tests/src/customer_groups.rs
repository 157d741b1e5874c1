//! The customer-groups map's tables as the end-to-end tests make them (on SQLite, and
//! on PostgreSQL and MariaDB for the server tests): the
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

/// The ERP table on PostgreSQL: the same columns, key and types as [`ERP_TABLE`] (the
/// names quoted, as the connector quotes them).
pub const PG_ERP_TABLE: &str = r#"CREATE TABLE "CustCustomerGroup" (
    "DATAAREAID" text NOT NULL, "CUSTOMERGROUPID" text NOT NULL, "DESCRIPTION" text,
    "ISSALESTAXINCLUDEDINPRICE" text, "PAYMENTTERMID" text,
    "CLEARINGPERIODPAYMENTTERMNAME" text,
    PRIMARY KEY ("DATAAREAID", "CUSTOMERGROUPID"))"#;

/// The ERP table on MariaDB: the same columns and key as [`ERP_TABLE`] (key text as
/// `VARCHAR`), byte-wise compared like SQLite's text.
pub const MARIADB_ERP_TABLE: &str = "CREATE TABLE CustCustomerGroup (
    DATAAREAID VARCHAR(10) NOT NULL, CUSTOMERGROUPID VARCHAR(20) NOT NULL, DESCRIPTION TEXT,
    ISSALESTAXINCLUDEDINPRICE VARCHAR(10), PAYMENTTERMID VARCHAR(20),
    CLEARINGPERIODPAYMENTTERMNAME VARCHAR(20),
    PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))
    ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin";

/// The CRM table on MariaDB: the same columns, key and types as [`CRM_TABLE`] (key text
/// as `VARCHAR(191)`, which an InnoDB key can hold whole in utf8mb4; the flag as
/// `BOOLEAN`, a `TINYINT(1)`), byte-wise compared like SQLite's text.
pub const MARIADB_CRM_TABLE: &str = "CREATE TABLE msdyn_customergroups (
    msdyn_company VARCHAR(191) NOT NULL, msdyn_groupid VARCHAR(191) NOT NULL,
    msdyn_description TEXT, msdyn_issalestaxincludedinprice BOOLEAN,
    msdyn_paymenttermid TEXT, msdyn_clearingperiodpaymenttermname TEXT,
    PRIMARY KEY (msdyn_company, msdyn_groupid))
    ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin";

/// The map's name in [`write_server_erp_config`].
pub const MAP: &str = "customer-groups";

/// Writes `DIR/dualwrite.toml` for the customer-groups map with the ERP side as
/// `erp_side` (TOML lines: a server's connector and URL) and the CRM on an SQLite file
/// `DIR/crm.db`, made here with [`CRM_TABLE`] in WAL mode; the admin API on a free
/// port, lookups not resolved. Returns the config's path.
pub fn write_server_erp_config(dir: &std::path::Path, erp_side: &str) -> std::path::PathBuf {
    rusqlite::Connection::open(dir.join("crm.db"))
        .expect("create the CRM file")
        .execute_batch(&format!("PRAGMA journal_mode=WAL; {CRM_TABLE};"))
        .expect("CRM table");
    let config = dir.join("dualwrite.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "state"
plugins_dir = "{plugins}"

[admin]
listen = "127.0.0.1:0"

[sides.erp]
{erp_side}

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.{MAP}]
plugin = "customer_groups.wasm"
{MAP_ENDPOINTS}

[maps.{MAP}.config]
resolve_lookups = false
"#,
            plugins = crate::plugins_dir().display()
        ),
    )
    .expect("config");
    config
}
