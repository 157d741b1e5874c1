//! Where a demo side's database lives: an SQLite file in the demo folder (the default),
//! or a PostgreSQL or MariaDB/MySQL database given by URL (`dualwrite demo --erp
//! postgres://... --crm mysql://...`).
//!
//! A server database gets the demo's tables dropped and made again, so give the demo a
//! scratch database. The password, if the server wants one, comes from
//! `DUALWRITE_ERP_PASSWORD` / `DUALWRITE_CRM_PASSWORD` (the deployment's config names
//! the variable, never the value). Seed rows are written with the engine's own writer
//! for the side (its writes are not captured, so they reach the other side through the
//! initial sync's merge, as on SQLite); the live edit generator writes with plain SQL
//! on its own connection, like an application.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mysql::prelude::Queryable;

use super::DemoMap;
use crate::apply::mysql::MysqlWriter;
use crate::apply::postgres::PostgresWriter;
use crate::apply::sqlite::SqliteWriter;
use crate::apply::{ApplyBatch, RowWrite};
use crate::capture::mysql::MysqlOptions;
use crate::capture::postgres::PostgresOptions;
use crate::capture::sqlite::SqliteOptions;
use crate::change::Side;
use crate::config::Secret;

/// A demo side's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoStore {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (URL without a password).
    Postgres(String),
    /// A MariaDB or MySQL database (URL without a password).
    Mysql(String),
}

/// The variable holding the password of `side`'s server, if any.
fn password_var(side: Side) -> &'static str {
    match side {
        Side::Erp => "DUALWRITE_ERP_PASSWORD",
        Side::Crm => "DUALWRITE_CRM_PASSWORD",
    }
}

fn password(side: Side) -> Option<Secret> {
    std::env::var(password_var(side)).ok().map(Secret::new)
}

impl DemoStore {
    /// The store for `side`: the server at `url`, or `<dir>/<side>.db`.
    pub fn new(url: Option<&str>, dir: &Path, side: Side) -> anyhow::Result<DemoStore> {
        let Some(url) = url else {
            return Ok(DemoStore::Sqlite(dir.join(format!("{side}.db"))));
        };
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => Ok(DemoStore::Postgres(url.to_owned())),
            Some("mysql" | "mariadb") => Ok(DemoStore::Mysql(url.to_owned())),
            _ => bail!(
                "--{side} {url}: give a postgres://, postgresql://, mysql:// or mariadb:// URL \
                 (or nothing, for an SQLite file in the demo folder)"
            ),
        }
    }

    /// The SQLite file, for a store that is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DemoStore::Sqlite(path) => Some(path),
            _ => None,
        }
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            DemoStore::Sqlite(path) => path.display().to_string(),
            DemoStore::Postgres(url) | DemoStore::Mysql(url) => url.clone(),
        }
    }

    /// The `[sides.<side>]` settings of the deployment's config, without the header.
    pub fn config(&self, side: Side) -> String {
        let password = match password(side) {
            Some(_) => format!("password_env = \"{}\"\n", password_var(side)),
            None => String::new(),
        };
        match self {
            DemoStore::Sqlite(path) => {
                let file = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("connector = \"sqlite\"\npath = {file:?}\n")
            }
            DemoStore::Postgres(url) => {
                format!("connector = \"postgres\"\nurl = {url:?}\n{password}")
            }
            DemoStore::Mysql(url) => format!("connector = \"mariadb\"\nurl = {url:?}\n{password}"),
        }
    }

    /// Makes the tables of `maps` for `side` (a server's demo tables are dropped first).
    pub fn create_tables(&self, side: Side, maps: &[DemoMap]) -> anyhow::Result<()> {
        match self {
            DemoStore::Sqlite(path) => super::create_tables(path, side, maps),
            DemoStore::Postgres(url) => {
                let mut client = self.postgres_client(url, side)?;
                for map in maps {
                    let table =
                        crate::capture::postgres::quote_ident(&map.descriptor.entity(side).entity);
                    client
                        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                        .with_context(|| format!("dropping {table} in {url}"))?;
                }
                super::postgres::create_tables_with(&mut client, url, side, maps)
            }
            DemoStore::Mysql(url) => {
                let mut conn = self.mysql_conn(url, side)?;
                for map in maps {
                    let table =
                        crate::capture::mysql::quote_ident(&map.descriptor.entity(side).entity);
                    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
                        .with_context(|| format!("dropping {table} in {url}"))?;
                }
                let password = password(side);
                super::mysql::create_tables(url, password.as_ref().map(Secret::expose), side, maps)
            }
        }
    }

    /// Makes the tables of `maps` for `side` without touching any table that exists:
    /// give it only maps whose tables are missing (`dualwrite init`).
    pub fn create_missing_tables(&self, side: Side, maps: &[DemoMap]) -> anyhow::Result<()> {
        match self {
            DemoStore::Sqlite(path) => super::create_tables(path, side, maps),
            DemoStore::Postgres(url) => {
                let mut client = self.postgres_client(url, side)?;
                super::postgres::create_tables_with(&mut client, url, side, maps)
            }
            DemoStore::Mysql(url) => {
                let password = password(side);
                super::mysql::create_tables(url, password.as_ref().map(Secret::expose), side, maps)
            }
        }
    }

    /// Writes seed rows with the engine's own writer for `side` (5,000 rows per
    /// transaction).
    pub fn write(&self, side: Side, writes: &[RowWrite]) -> anyhow::Result<()> {
        let name = side.to_string();
        let mut writer: Box<dyn ApplyBatch> = match self {
            DemoStore::Sqlite(path) => {
                Box::new(SqliteWriter::open(path, SqliteOptions::default())?)
            }
            DemoStore::Postgres(url) => {
                let mut options = PostgresOptions::new(url.clone(), &name);
                options.password = password(side);
                Box::new(PostgresWriter::open(options))
            }
            DemoStore::Mysql(url) => {
                let mut options = MysqlOptions::new(url.clone(), &name);
                options.password = password(side);
                Box::new(MysqlWriter::open(options))
            }
        };
        for chunk in writes.chunks(5_000) {
            writer.apply(chunk)?;
        }
        Ok(())
    }

    /// A connection that writes like an application (its writes are captured).
    pub fn application(&self, side: Side) -> anyhow::Result<AppConnection> {
        Ok(match self {
            DemoStore::Sqlite(path) => {
                let db = rusqlite::Connection::open(path)?;
                db.busy_timeout(std::time::Duration::from_secs(5))?;
                AppConnection::Sqlite(db)
            }
            DemoStore::Postgres(url) => {
                AppConnection::Postgres(Box::new(self.postgres_client(url, side)?))
            }
            DemoStore::Mysql(url) => AppConnection::Mysql(Box::new(self.mysql_conn(url, side)?)),
        })
    }

    fn postgres_client(&self, url: &str, side: Side) -> anyhow::Result<postgres::Client> {
        let mut config: postgres::Config = url.parse().with_context(|| format!("parsing {url}"))?;
        if let Some(password) = password(side) {
            config.password(password.expose());
        }
        config
            .connect(postgres::NoTls)
            .with_context(|| format!("connecting to {url}"))
    }

    fn mysql_conn(&self, url: &str, side: Side) -> anyhow::Result<mysql::Conn> {
        let driver_url = url.replacen("mariadb://", "mysql://", 1);
        let opts = mysql::Opts::from_url(&driver_url).with_context(|| format!("parsing {url}"))?;
        let password = password(side);
        let opts = mysql::OptsBuilder::from_opts(opts).pass(password.as_ref().map(Secret::expose));
        mysql::Conn::new(opts).with_context(|| format!("connecting to {url}"))
    }
}

/// An application's connection to a demo side: runs SQL text.
pub enum AppConnection {
    /// SQLite.
    Sqlite(rusqlite::Connection),
    /// PostgreSQL.
    Postgres(Box<postgres::Client>),
    /// MariaDB/MySQL.
    Mysql(Box<mysql::Conn>),
}

impl AppConnection {
    /// `name` quoted as an identifier for this store.
    pub fn ident(&self, name: &str) -> String {
        match self {
            AppConnection::Mysql(_) => crate::capture::mysql::quote_ident(name),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// `text` as a string literal for this store.
    pub fn literal(&self, text: &str) -> String {
        match self {
            AppConnection::Mysql(_) => {
                format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
            }
            _ => format!("'{}'", text.replace('\'', "''")),
        }
    }

    /// Runs one statement.
    pub fn run(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            AppConnection::Sqlite(db) => {
                db.execute_batch(sql)?;
            }
            AppConnection::Postgres(client) => client.batch_execute(sql)?,
            AppConnection::Mysql(conn) => conn.query_drop(sql)?,
        }
        Ok(())
    }
}
