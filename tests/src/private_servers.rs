//! Database servers of a test's own, started from the machine's binaries in a temporary
//! folder on a free loopback port: [`PrivatePostgres`] and [`PrivateMariadb`]. Unlike
//! the shared servers of [`crate::servers`], a test may run one with settings of its own
//! (a `wal_level` the shared server does not have) or stop it and start it again on the
//! same data and port (a side whose server goes down and comes back). Dropped, a server
//! is stopped at once and its folder removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a private server may take to start or stop before the test fails.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the tests run as root: PostgreSQL's tools then run as `postgres` (it refuses
/// root), MariaDB's server needs `--user=root`.
fn as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout == b"0\n")
    })
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

/// The last lines of the log file at `path` (for a failure message).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A PostgreSQL cluster of one test (`initdb` in a temporary folder, trust
/// authentication, the superuser `postgres`), on a free loopback port. [`stop`] and
/// [`start_again`] take it down and bring it back on the same data and port; dropped, it
/// is stopped at once (`-m immediate`) and removed.
///
/// [`stop`]: PrivatePostgres::stop
/// [`start_again`]: PrivatePostgres::start_again
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    wal_level: String,
    running: bool,
}

impl PrivatePostgres {
    /// Makes a cluster and starts it with `wal_level` (`replica`, `logical`, ...);
    /// returns once it accepts connections.
    pub fn start(wal_level: &str) -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries are in /usr/lib/postgresql/VERSION/bin")
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .find(|bin| bin.join("initdb").is_file())
            .expect("initdb");
        let dir = tempfile::tempdir().expect("tempdir");
        if as_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {}", dir.path().display());
        }
        let mut server = PrivatePostgres {
            dir,
            port: free_port(),
            bin,
            wal_level: wal_level.to_owned(),
            running: false,
        };
        let initdb = server.bin.join("initdb");
        let data = server.data();
        server.run(&[
            path_str(&initdb),
            "-D",
            path_str(&data),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        server.start_again();
        server
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on it, as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new client on `database`.
    pub fn client(&self, database: &str) -> postgres::Client {
        crate::servers::pg_client(&self.url(database))
    }

    /// Creates an empty database named `name`; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
        self.url(name)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, a checkpoint is
    /// written) and waits until it is down.
    pub fn stop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        self.run(&[
            path_str(&pg_ctl),
            "-D",
            path_str(&data),
            "-m",
            "fast",
            "-w",
            "-t",
            &SERVER_TIMEOUT.as_secs().to_string(),
            "stop",
        ]);
        self.running = false;
    }

    /// Starts the server (again) on its data folder and port, with its `wal_level`;
    /// returns once it accepts connections.
    pub fn start_again(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let log = self.dir.path().join("log");
        let options = format!(
            "-c wal_level={} -c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.wal_level,
            self.port,
            self.dir.path().display()
        );
        let status = self
            .tool(&[
                path_str(&pg_ctl),
                "-D",
                path_str(&data),
                "-w",
                "-t",
                &SERVER_TIMEOUT.as_secs().to_string(),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "start",
            ])
            .status()
            .expect("run pg_ctl");
        assert!(
            status.success(),
            "pg_ctl start failed; the server's log:\n{}",
            log_tail(&log)
        );
        self.running = true;
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart_server(&mut self) {
        self.stop();
        self.start_again();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `command`, run as `postgres` when the test runs as root.
    fn tool(&self, command: &[&str]) -> Command {
        let mut tool = if as_root() {
            let mut tool = Command::new("runuser");
            tool.args(["-u", "postgres", "--"]).args(command);
            tool
        } else {
            let mut tool = Command::new(command[0]);
            tool.args(&command[1..]);
            tool
        };
        tool.stdout(Stdio::null());
        tool
    }

    /// Runs `command` (see [`tool`](Self::tool)); it must succeed.
    fn run(&self, command: &[&str]) {
        let status = self.tool(command).status().expect("run a PostgreSQL tool");
        assert!(status.success(), "{command:?} failed");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let _ = self
            .tool(&[
                path_str(&pg_ctl),
                "-D",
                path_str(&data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stderr(Stdio::null())
            .status();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A MariaDB server of one test (`mariadb-install-db` in a temporary folder), on a free
/// loopback port, with what the connector's capture needs (the binary log on, in ROW
/// format with full row images and metadata, a server id; as `scripts/servers-setup.sh`
/// sets the shared server) and `root` reachable over TCP without a password.
/// [`stop`] and [`start_again`] take it down and bring it back on the same data and
/// port; dropped, it is killed and removed.
///
/// [`stop`]: PrivateMariadb::stop
/// [`start_again`]: PrivateMariadb::start_again
pub struct PrivateMariadb {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

impl PrivateMariadb {
    /// Makes a data folder and starts the server; returns once it accepts connections.
    pub fn start() -> PrivateMariadb {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        if as_root() {
            install.arg("--user=root");
        }
        let output = install.output().expect("run mariadb-install-db");
        assert!(
            output.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = PrivateMariadb {
            dir,
            port: free_port(),
            server: None,
        };
        server.start_again();
        server
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on it, as `root` without a password.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    /// A new connection to `database`.
    pub fn conn(&self, database: &str) -> mysql::Conn {
        crate::servers::my_conn(&self.url(database))
    }

    /// Creates an empty database named `name` (utf8mb4, binary collation, as the shared
    /// server's test databases); returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        use mysql::prelude::Queryable as _;
        self.conn("mysql")
            .query_drop(format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
        self.url(name)
    }

    /// Stops the server (SIGTERM: a clean shutdown) and waits until it has exited.
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM of mariadbd");
        let started = Instant::now();
        loop {
            if server.try_wait().expect("wait for mariadbd").is_some() {
                return;
            }
            if started.elapsed() > SERVER_TIMEOUT {
                let _ = server.kill();
                let _ = server.wait();
                panic!(
                    "mariadbd did not shut down within {} s; its log:\n{}",
                    SERVER_TIMEOUT.as_secs(),
                    log_tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server (again) on its data folder and port; returns once it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "mariadbd is running already");
        let dir = self.dir.path();
        // `mariadbd` is in /usr/sbin, which a test's PATH may lack.
        let binary = ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .unwrap_or("mariadbd");
        let mut command = Command::new(binary);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", self.log().display()))
            .args([
                // The binary log in the data folder, named as on the shared server.
                "--log-bin=mysql-bin",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--skip-name-resolve",
                // Small and quick to start.
                "--innodb-buffer-pool-size=16M",
                "--skip-innodb-buffer-pool-dump-at-shutdown",
                "--skip-innodb-buffer-pool-load-at-startup",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if as_root() {
            command.arg("--user=root");
        }
        let mut server = command.spawn().expect("start mariadbd");
        let started = Instant::now();
        let opts = mysql::OptsBuilder::from_opts(
            mysql::Opts::from_url(&self.url("mysql")).expect("a URL"),
        )
        .tcp_connect_timeout(Some(Duration::from_secs(2)));
        loop {
            if let Some(status) = server.try_wait().expect("wait for mariadbd") {
                panic!(
                    "mariadbd exited ({status}) while starting; its log:\n{}",
                    log_tail(&self.log())
                );
            }
            if mysql::Conn::new(opts.clone()).is_ok() {
                break;
            }
            if started.elapsed() > SERVER_TIMEOUT {
                let _ = server.kill();
                let _ = server.wait();
                panic!(
                    "mariadbd did not accept connections within {} s; its log:\n{}",
                    SERVER_TIMEOUT.as_secs(),
                    log_tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.server = Some(server);
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart_server(&mut self) {
        self.stop();
        self.start_again();
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}
