//! A real `dualwrite run` process for end-to-end tests of the command line: started on
//! a config file, with the admin API on the free loopback port the config asks for
//! (`[admin] listen = "127.0.0.1:0"`) and the token it generates and prints. Its stderr
//! lines stay readable by the test (what the engine reports, such as plugin swaps).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `dualwrite run` in the background; killed (SIGKILL) when dropped.
pub struct EngineProcess {
    child: Child,
    /// The admin API's base URL.
    pub url: String,
    /// The admin token it generated.
    pub token: String,
    lines: mpsc::Receiver<String>,
    /// Every line received so far.
    seen: Vec<String>,
    /// How many of `seen` a wait has looked at.
    waited: usize,
}

impl EngineProcess {
    /// Starts `binary run -c config` with the compiled-code cache in `cache_dir` and
    /// waits (up to two minutes) for its admin address and token.
    pub fn start(binary: &Path, config: &Path, cache_dir: &Path) -> EngineProcess {
        let mut child = Command::new(binary)
            .args(["run", "-c"])
            .arg(config)
            .args(["--status-every", "0"])
            .env("DUALWRITE_CACHE_DIR", cache_dir)
            .env_remove("DUALWRITE_TOKEN")
            .env_remove("DUALWRITE_URL")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start dualwrite run");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut engine = EngineProcess {
            child,
            url: String::new(),
            token: String::new(),
            lines,
            seen: Vec::new(),
            waited: 0,
        };
        let url = engine
            .wait_for_line("the admin address", Duration::from_secs(120), |line| {
                line.starts_with("dualwrite: admin API on ")
            })
            .trim_start_matches("dualwrite: admin API on ")
            .trim()
            .to_owned();
        let token = engine
            .wait_for_line("the admin token", Duration::from_secs(120), |line| {
                line.starts_with("dualwrite: admin token")
            })
            .rsplit(' ')
            .next()
            .expect("token")
            .to_owned();
        engine.url = url;
        engine.token = token;
        engine
    }

    /// Waits for a stderr line that `matches` (one not seen by an earlier wait) and
    /// returns it; panics after `timeout`, showing the lines seen, naming `what`.
    pub fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.seen.get(self.waited) {
                self.waited += 1;
                if matches(line) {
                    return line.clone();
                }
                continue;
            }
            let left = timeout.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "dualwrite run did not print {what} within {} s; it printed:\n{}",
                    timeout.as_secs(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every stderr line it printed so far (a wait still looks at those it has not).
    pub fn lines(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Whether the process still runs (it has neither exited nor been killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `GET path` of its admin API with the token; panics unless it answers 2xx JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let response = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().expect("a JSON answer")
    }

    /// The content hash of the plugin `map` runs now.
    pub fn plugin_hash(&self, map: &str) -> String {
        self.get(&format!("/api/v1/maps/{map}/config"))["plugin"]["hash"]
            .as_str()
            .expect("a plugin hash")
            .to_owned()
    }

    /// `GET path` of its admin API with the token, as text; panics unless it answers 2xx.
    pub fn get_text(&self, path: &str) -> String {
        let response = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.text().expect("a text answer")
    }

    /// `map` as `GET /api/v1/maps` lists it: mode, which sides are offline, queue depth,
    /// open errors, counters, ...
    pub fn map(&self, map: &str) -> serde_json::Value {
        self.get("/api/v1/maps")["maps"]
            .as_array()
            .expect("maps")
            .iter()
            .find(|entry| entry["name"] == map)
            .unwrap_or_else(|| panic!("map {map} is listed"))
            .clone()
    }

    /// The counters of `map` in the latest snapshot (published every quarter second).
    pub fn counters(&self, map: &str) -> serde_json::Value {
        self.map(map)["counters"].clone()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
