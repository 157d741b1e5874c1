//! The machine's database servers for tests: [`ensure_ready`] runs
//! `scripts/servers-setup.sh` once per test process (it starts a server that is down and
//! turns on what the connectors need), and [`PgDatabase`] is a throwaway PostgreSQL
//! database, dropped with its replication slots and origins when the test ends.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the tests find PostgreSQL (trust authentication on this machine).
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

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
