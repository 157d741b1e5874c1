//! The machine's database servers for tests: [`ensure_ready`] runs
//! `scripts/servers-setup.sh` once per test process (it starts a server that is down and
//! turns on what the connectors need), [`PgDatabase`] is a throwaway PostgreSQL
//! database, dropped with its replication slots and origins when the test ends, and
//! [`MyDatabase`] is a throwaway MariaDB database, dropped with its sessions.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the tests find PostgreSQL (trust authentication on this machine).
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Where the tests find MariaDB (root without a password on this machine).
pub const MY_SERVER: &str = "mysql://root@127.0.0.1:3306";

/// Makes sure both servers run with the settings the connectors need; panics with the
/// script's output when it fails.
pub fn ensure_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let result = READY.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/servers-setup.sh");
        let output = Command::new("bash")
            .arg(script)
            .output()
            .map_err(|error| format!("running {script}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// A PostgreSQL client connected to `url`.
pub fn pg_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"))
}

/// A fresh PostgreSQL database for one test; dropped (with every replication slot on it
/// and every replication origin named after it) on drop.
pub struct PgDatabase {
    /// The database's name (`dwt_<pid>_<n>_<label>`), also a prefix of the slot and origin
    /// names the connector derives from it.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates an empty database; `label` (lower-case letters, digits, `_`) helps to tell
    /// whose it is.
    pub fn create(label: &str) -> PgDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        ensure_ready();
        let name = format!(
            "dwt_{}_{}_{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = pg_client(&format!("{PG_SERVER}/postgres"));
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create database");
        PgDatabase {
            url: format!("{PG_SERVER}/{name}"),
            name,
        }
    }

    /// A new client on this database.
    pub fn client(&self) -> postgres::Client {
        pg_client(&self.url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let Ok(mut admin) =
            postgres::Client::connect(&format!("{PG_SERVER}/postgres"), postgres::NoTls)
        else {
            return;
        };
        let name = &self.name;
        let pattern = format!("%{}%", name.replace('_', "\\_"));
        let _ = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[name],
        );
        for _ in 0..50 {
            let dropped = admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = $1",
                &[name],
            );
            if dropped.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = admin.execute(
            "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin \
             WHERE roname LIKE $1",
            &[&pattern],
        );
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }
}

/// A MariaDB connection to `url`.
pub fn my_conn(url: &str) -> mysql::Conn {
    let opts = mysql::Opts::from_url(url).unwrap_or_else(|error| panic!("{url}: {error}"));
    mysql::Conn::new(opts).unwrap_or_else(|error| panic!("connecting to {url}: {error}"))
}

/// A fresh MariaDB database for one test; dropped (after its sessions are killed) on
/// drop.
pub struct MyDatabase {
    /// The database's name (`dwt_<pid>_<n>_<label>`).
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl MyDatabase {
    /// Creates an empty database; `label` (lower-case letters, digits, `_`) helps to tell
    /// whose it is.
    pub fn create(label: &str) -> MyDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        ensure_ready();
        let name = format!(
            "dwt_{}_{}_{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        use mysql::prelude::Queryable as _;
        my_conn(&format!("{MY_SERVER}/mysql"))
            .query_drop(format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .expect("create database");
        MyDatabase {
            url: format!("{MY_SERVER}/{name}"),
            name,
        }
    }

    /// A new connection to this database.
    pub fn conn(&self) -> mysql::Conn {
        my_conn(&self.url)
    }

    /// Runs `sql` (one statement or several) on a new connection.
    pub fn exec(&self, sql: &str) {
        use mysql::prelude::Queryable as _;
        self.conn()
            .query_drop(sql)
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// The rows `sql` returns, every value as text (`NULL` for null).
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        use mysql::prelude::Queryable as _;
        let rows: Vec<mysql::Row> = self
            .conn()
            .query(sql)
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        rows.into_iter()
            .map(|row| {
                row.unwrap()
                    .into_iter()
                    .map(|value| match value {
                        mysql::Value::NULL => "NULL".to_owned(),
                        mysql::Value::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        mysql::Value::Int(number) => number.to_string(),
                        mysql::Value::UInt(number) => number.to_string(),
                        other => other.as_sql(true),
                    })
                    .collect()
            })
            .collect()
    }

    /// Kills every session connected to this database (the engine's capture, binlog
    /// reader and writers; not other tests' sessions) from the server side; returns how
    /// many.
    pub fn kill_sessions(&self) -> usize {
        use mysql::prelude::Queryable as _;
        let mut admin = my_conn(&format!("{MY_SERVER}/mysql"));
        let ids: Vec<u64> = admin
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                (&self.name,),
            )
            .expect("processlist");
        for id in &ids {
            let _ = admin.query_drop(format!("KILL {id}"));
        }
        ids.len()
    }
}

impl Drop for MyDatabase {
    fn drop(&mut self) {
        use mysql::prelude::Queryable as _;
        let Ok(opts) = mysql::Opts::from_url(&format!("{MY_SERVER}/mysql")) else {
            return;
        };
        let Ok(mut admin) = mysql::Conn::new(opts) else {
            return;
        };
        if let Ok(ids) = admin.exec::<u64, _, _>(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
            (&self.name,),
        ) {
            for id in ids {
                let _ = admin.query_drop(format!("KILL {id}"));
            }
        }
        let _ = admin.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}
