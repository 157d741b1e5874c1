//! Test-only: a map plugin built for `wasm32-wasip2`, so the component imports WASI
//! (as Python and JavaScript plugins do). The host links WASI with a context that grants
//! nothing; this plugin reports what it can reach, and the runtime tests check it
//! reaches nothing: no environment, no arguments, no files, a clock frozen at the Unix
//! epoch, and randomness that carries no entropy from the host.
//!
//! Every change becomes one upsert of `{id, report}` where `report` lists, one probe per
//! line, what the probe saw.

use std::time::{SystemTime, UNIX_EPOCH};

use dualwrite_guest::{
    Change, ConfigError, Descriptor, EntitySpec, Host, MapPlugin, Outcome, ValueKind, Write,
};

/// The probe plugin.
#[derive(Default)]
pub struct WasiProbe;

/// What the sandbox lets the plugin see, one line per probe.
pub fn report() -> String {
    let env: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
    let args: Vec<String> = std::env::args().collect();
    let file = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("read {} bytes", bytes.len()),
        Err(error) => format!("error: {error}"),
    };
    let dir = match std::fs::read_dir(".") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(error) => format!("error: {error}"),
    };
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs().to_string())
        .unwrap_or_else(|_| "before epoch".to_owned());
    let network = match std::net::TcpStream::connect("127.0.0.1:5432") {
        Ok(_) => "connected".to_owned(),
        Err(error) => format!("error: {error}"),
    };
    format!(
        "env: {env:?}\nargs: {args:?}\nfile: {file}\ndir: {dir}\nclock-seconds: {clock}\nnetwork: {network}"
    )
}

impl MapPlugin for WasiProbe {
    fn configure(&mut self, _config: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    fn describe(&self) -> Descriptor {
        Descriptor::new(
            "wasi-probe",
            "1.0.0",
            "Test-only: reports what WASI lets it reach",
        )
        .erp(
            EntitySpec::new("Probes")
                .key("id", ValueKind::Text)
                .field("report", ValueKind::Text),
        )
        .crm(
            EntitySpec::new("probes")
                .key("id", ValueKind::Text)
                .field("report", ValueKind::Text),
        )
    }

    fn transform(&self, change: &Change, _host: &dyn Host) -> Outcome {
        Outcome::write(
            Write::upsert()
                .set(0, change.get(0).clone())
                .set(1, report()),
        )
    }
}

dualwrite_guest::export_plugin!(WasiProbe);
