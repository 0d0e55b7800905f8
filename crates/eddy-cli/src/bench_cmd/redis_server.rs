//! `--spawn-redis`: a private `redis-server` on a free loopback port, no
//! persistence, stopped when the benchmark ends. (eddy-testkit has a fuller
//! guard for tests; the CLI does not depend on its test-only features.)

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{CliError, CliResult};

/// Attempts with a fresh port when the one picked was taken meanwhile.
const ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server, killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PrivateRedis {
    /// Start `redis-server` (from PATH) and wait until it answers PING.
    pub fn start() -> CliResult<Self> {
        let dir = std::env::temp_dir().join(format!(
            "eddy-bench-redis-{}-{}",
            std::process::id(),
            super::measure::now_us()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            let log = std::fs::File::create(dir.join("redis.log"))
                .map_err(|e| CliError::new(format!("cannot create the Redis log: {e}")))?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().map_err(|e| {
                    CliError::new(format!("cannot open the Redis log: {e}"))
                })?))
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| {
                    CliError::new(format!(
                        "cannot start redis-server (is it installed and on PATH?): {e}"
                    ))
                })?;
            let mut child = child;
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    let server = Self { child, port, dir };
                    eprintln!("started redis-server on {}", server.url());
                    return Ok(server);
                }
                Err(e) => {
                    last_error = e;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        Err(CliError::new(format!(
            "redis-server did not start: {last_error}; its log: {log}"
        )))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wait until the server on `port` answers PING (or exits).
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("redis://127.0.0.1:{port}/0");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited with {status}"));
        }
        let pong = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if pong.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no answer on port {port} within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> CliResult<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::new(format!("cannot find a free port: {e}")))
}
