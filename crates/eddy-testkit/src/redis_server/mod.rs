//! A guard around a real `redis-server` child process, for tests.
//!
//! Modelled on redis-rs's test harness: the guard owns the child process and
//! a temporary data directory, waits until the server answers, hands out the
//! server log for failure messages, and kills the process on `Drop` (printing
//! the log when the test is panicking).
//!
//! ```
//! use eddy_testkit::RedisServer;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = RedisServer::start()?;
//! assert_eq!(server.redis_cli(["PING"])?, "PONG");
//! assert!(server.url().starts_with("redis://127.0.0.1:"));
//! # Ok(())
//! # }
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`RedisServerBuilder::start`] and [`RedisServer::restart`] wait
/// for the server to answer `PING` by default.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::stop`] waits for the process to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when the server fails to bind the one picked.
const BIND_ATTEMPTS: usize = 5;
/// Poll interval while waiting for the server to come up or go down.
const POLL: Duration = Duration::from_millis(10);
/// How long [`RedisServer::pause`] / [`RedisServer::resume`] wait for the
/// signal to take effect.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);

const LOG_FILE: &str = "redis.log";
/// Receives the child's stdout and stderr: errors reported before the log
/// file is opened (e.g. a bad command-line option) only appear here.
const OUTPUT_FILE: &str = "redis-server.out";

/// What a test says when `redis-server` is not on the PATH: the tests that
/// need Redis fail rather than skip, so this says how to get it.
pub const REDIS_SERVER_MISSING: &str = "redis-server is not on PATH: the Redis-backed tests \
    start their own redis-server (7.0 or newer); install it (Debian/Ubuntu: \
    `sudo apt-get install redis-server`, macOS: `brew install redis`) and run the tests again";
const SOCKET_FILE: &str = "redis.sock";

/// Configures and starts a [`RedisServer`].
///
/// Defaults: a free TCP port on 127.0.0.1, a fresh temporary data directory,
/// no RDB snapshots, no AOF.
///
/// ```
/// use eddy_testkit::RedisServer;
///
/// # fn main() -> std::io::Result<()> {
/// let server = RedisServer::builder()
///     .appendonly(true)
///     .arg("--maxmemory", "10mb")
///     .start()?;
/// assert_eq!(server.redis_cli(["CONFIG", "GET", "appendfsync"])?, "appendfsync\nalways");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisServerBuilder {
    appendonly: bool,
    unix_socket: bool,
    port: Option<u16>,
    dir: Option<PathBuf>,
    extra_args: Vec<OsString>,
    ready_timeout: Duration,
    config_file: Option<PathBuf>,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            appendonly: false,
            unix_socket: false,
            port: None,
            dir: None,
            extra_args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            config_file: None,
        }
    }
}

impl RedisServerBuilder {
    /// A builder with the defaults; same as [`RedisServer::builder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the append-only file on, with `appendfsync always` so that every
    /// acknowledged write survives a SIGKILL (for crash/fault tests).
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// Listens on a unix socket in the data directory instead of TCP
    /// (`--port 0`). The socket path must fit in 107 bytes, so keep a custom
    /// [`dir`](Self::dir) short.
    pub fn unix_socket(mut self, on: bool) -> Self {
        self.unix_socket = on;
        self
    }

    /// Adds a configuration option, e.g. `.arg("--maxmemory", "10mb")`.
    /// Extra options come after the defaults, so they override them.
    pub fn arg(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.extra_args.push(name.as_ref().to_owned());
        self.extra_args.push(value.as_ref().to_owned());
        self
    }

    /// Adds an option that takes no value, e.g. `.flag("--sentinel")`.
    pub fn flag(mut self, name: impl AsRef<OsStr>) -> Self {
        self.extra_args.push(name.as_ref().to_owned());
        self
    }

    /// Uses this TCP port instead of picking a free one (e.g. to start a new
    /// server where a killed one listened). No retry on a bind failure.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Uses this data directory (created if missing) instead of a fresh
    /// temporary one, e.g. to start a server on a killed server's data. The
    /// caller owns the directory; it is not removed on drop.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// How long to wait for the server to answer `PING` (default 10 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the server on this configuration file (the first argument;
    /// the options above and [`arg`](Self::arg)s still override it). A
    /// Sentinel needs one it can rewrite: `.config_file(path).flag("--sentinel")`
    /// is how [`RedisSentinel`] starts its Sentinels.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Starts the server and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// If `redis-server` cannot be spawned, exits, or does not answer within
    /// the ready timeout. The error message includes the server log.
    pub fn start(self) -> io::Result<RedisServer> {
        let (tempdir, dir) = match &self.dir {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                (None, dir.clone())
            }
            None => {
                let tempdir = tempfile::Builder::new().prefix("eddy-redis-").tempdir()?;
                let dir = tempdir.path().to_path_buf();
                (Some(tempdir), dir)
            }
        };
        let endpoint = if self.unix_socket {
            Endpoint::Unix(dir.join(SOCKET_FILE))
        } else {
            Endpoint::Tcp(match self.port {
                Some(port) => port,
                None => free_port()?,
            })
        };
        let mut server = RedisServer {
            child: None,
            pid: 0,
            endpoint,
            dir,
            _tempdir: tempdir,
            config: self,
        };
        server.launch()?;
        Ok(server)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Tcp(u16),
    Unix(PathBuf),
}

/// A running `redis-server` child process owned by a test.
///
/// The process is killed (SIGKILL) when the guard is dropped; if the thread
/// is panicking at that moment, the server log is printed to stderr so the
/// test failure shows it. The temporary data directory is removed after the
/// process is gone.
///
/// ```
/// use eddy_testkit::RedisServer;
///
/// # fn main() -> std::io::Result<()> {
/// let mut server = RedisServer::builder().appendonly(true).start()?;
/// server.redis_cli(["SET", "k", "v"])?;
/// server.kill()?; // crash: SIGKILL
/// server.restart()?; // same port, same data directory
/// assert_eq!(server.redis_cli(["GET", "k"])?, "v");
/// # Ok(())
/// # }
/// ```
pub struct RedisServer {
    child: Option<Child>,
    pid: u32,
    endpoint: Endpoint,
    dir: PathBuf,
    // Declared after `child` for clarity only: `Drop for RedisServer` kills
    // the process before any field (and so this directory) is dropped.
    _tempdir: Option<TempDir>,
    config: RedisServerBuilder,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("pid", &self.pid)
            .field("running", &self.child.is_some())
            .field("url", &self.url())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Starts a server with the defaults (free TCP port, temporary directory,
    /// no persistence) and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// See [`RedisServerBuilder::start`].
    pub fn start() -> io::Result<Self> {
        RedisServerBuilder::new().start()
    }

    /// A builder for a server with non-default options.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::new()
    }

    /// The URL to connect to: `redis://127.0.0.1:PORT/0`, or
    /// `redis+unix:///DIR/redis.sock` for a unix-socket server.
    pub fn url(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(port) => format!("redis://127.0.0.1:{port}/0"),
            Endpoint::Unix(path) => format!("redis+unix://{}", path.display()),
        }
    }

    /// The TCP port, or 0 for a unix-socket server.
    pub fn port(&self) -> u16 {
        match self.endpoint {
            Endpoint::Tcp(port) => port,
            Endpoint::Unix(_) => 0,
        }
    }

    /// The unix socket path, for a unix-socket server.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Tcp(_) => None,
            Endpoint::Unix(path) => Some(path),
        }
    }

    /// The data directory (`--dir`), which also holds the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server log (all runs in this directory), followed by anything the
    /// process wrote to stdout/stderr. Never fails: an unreadable log is
    /// reported in the returned text.
    pub fn log(&self) -> String {
        let mut log = match fs::read_to_string(self.dir.join(LOG_FILE)) {
            Ok(log) => log,
            Err(err) => format!(
                "(cannot read {}: {err})\n",
                self.dir.join(LOG_FILE).display()
            ),
        };
        if let Ok(output) = fs::read_to_string(self.dir.join(OUTPUT_FILE)) {
            if !output.trim().is_empty() {
                log.push_str("--- redis-server stdout/stderr ---\n");
                log.push_str(&output);
            }
        }
        log
    }

    /// The process id of the most recently started process (it stays
    /// available after [`kill`](Self::kill) / [`stop`](Self::stop)).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is still running (a paused process is running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Kills the process with SIGKILL (a crash: no shutdown, no final fsync)
    /// and waits for it. Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// If the signal cannot be sent or the process cannot be waited for.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the process with SIGTERM (a clean shutdown) and waits for it to
    /// exit; a paused process is resumed so it can handle the signal.
    ///
    /// # Errors
    ///
    /// If the signal cannot be sent, or the process does not exit within
    /// 10 s (it is then killed, and the error includes the log).
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        signal(self.pid, "TERM")?;
        signal(self.pid, "CONT")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        child.kill()?;
        child.wait()?;
        Err(self.error(&format!(
            "redis-server (pid {}) did not exit within {STOP_TIMEOUT:?} after SIGTERM; killed it",
            self.pid
        )))
    }

    /// Freezes the process with SIGSTOP: it keeps its sockets open but stops
    /// answering, like a hung or partitioned server.
    ///
    /// # Errors
    ///
    /// If the process is not running or the signal cannot be sent.
    pub fn pause(&mut self) -> io::Result<()> {
        self.signal_running("STOP")?;
        self.wait_for_state(|state| state == 'T', "stopped")
    }

    /// Resumes a process frozen by [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Errors
    ///
    /// If the process is not running or the signal cannot be sent.
    pub fn resume(&mut self) -> io::Result<()> {
        self.signal_running("CONT")?;
        self.wait_for_state(|state| state != 'T', "resumed")
    }

    /// Starts the server again on the same port (or socket) and data
    /// directory with the same options, and waits until it answers `PING`.
    /// A process still running is first stopped cleanly ([`stop`](Self::stop));
    /// call [`kill`](Self::kill) first to simulate a crash.
    ///
    /// # Errors
    ///
    /// As for [`stop`](Self::stop) and [`RedisServerBuilder::start`]; the port
    /// is not changed, so a port taken in the meantime is an error.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Runs `redis-cli` against this server (`-p PORT` or `-s SOCKET`) with
    /// `args` and returns its stdout without the trailing newline.
    ///
    /// `redis-cli` prints a Redis error reply (e.g. `ERR ...`) on stdout and
    /// still exits with 0, so such a reply is returned as text.
    ///
    /// # Errors
    ///
    /// If `redis-cli` cannot be run or exits unsuccessfully (e.g. cannot
    /// connect); the error includes its stderr.
    pub fn redis_cli<I, S>(&self, args: I) -> io::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("redis-cli");
        match &self.endpoint {
            Endpoint::Tcp(port) => command
                .args(["-h", "127.0.0.1", "-p"])
                .arg(port.to_string()),
            Endpoint::Unix(path) => command.arg("-s").arg(path),
        };
        let output = command.args(args).stdin(Stdio::null()).output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli exited with {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                stdout
            )));
        }
        Ok(stdout.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn signal_running(&mut self, name: &str) -> io::Result<()> {
        if !self.is_running() {
            return Err(io::Error::other(format!(
                "cannot send SIG{name}: redis-server (pid {}) is not running",
                self.pid
            )));
        }
        signal(self.pid, name)
    }

    /// Signals are delivered asynchronously; on Linux, waits until
    /// `/proc/PID/stat` shows the effect so the caller can rely on it.
    fn wait_for_state(&self, reached: impl Fn(char) -> bool, what: &str) -> io::Result<()> {
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        loop {
            match process_state(self.pid) {
                None => return Ok(()), // no procfs: nothing to check
                Some(state) if reached(state) => return Ok(()),
                Some(state) if Instant::now() >= deadline => {
                    return Err(io::Error::other(format!(
                        "redis-server (pid {}) not {what} after {SIGNAL_TIMEOUT:?} (state {state})",
                        self.pid
                    )));
                }
                Some(_) => thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Spawns the process and waits until it answers; with an automatically
    /// picked port, retries on a new port when the server fails to bind.
    fn launch(&mut self) -> io::Result<()> {
        let auto_port = self.config.port.is_none() && matches!(self.endpoint, Endpoint::Tcp(_));
        let mut attempt = 1;
        loop {
            match self.spawn_and_wait() {
                Err(_) if auto_port && attempt < BIND_ATTEMPTS && self.failed_to_bind() => {
                    // Another process took the port between our probe and
                    // redis-server's bind: try a fresh one.
                    attempt += 1;
                    self.endpoint = Endpoint::Tcp(free_port()?);
                }
                result => return result,
            }
        }
    }

    fn failed_to_bind(&self) -> bool {
        let Endpoint::Tcp(port) = self.endpoint else {
            return false;
        };
        // Redis 7: "Failed listening on port 6379 (tcp), aborting."
        // Redis 6: "Could not create server TCP listening socket *:6379: bind: ..."
        let log = self.log();
        log.contains(&format!("Failed listening on port {port} "))
            || (log.contains("Could not create server TCP listening socket")
                && log.contains(&format!(":{port}: bind")))
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(OUTPUT_FILE))?;
        let mut command = Command::new("redis-server");
        if let Some(config_file) = &self.config.config_file {
            command.arg(config_file);
        }
        command
            .args(["--daemonize", "no", "--save", "", "--appendonly"])
            .arg(if self.config.appendonly { "yes" } else { "no" })
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join(LOG_FILE));
        if self.config.appendonly {
            command.args(["--appendfsync", "always"]);
        }
        match &self.endpoint {
            Endpoint::Tcp(port) => {
                command
                    .args(["--bind", "127.0.0.1", "--port"])
                    .arg(port.to_string());
            }
            Endpoint::Unix(path) => {
                command
                    .args(["--port", "0", "--unixsocket"])
                    .arg(path)
                    .args(["--unixsocketperm", "700"]);
            }
        }
        command
            .args(&self.config.extra_args)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        let child = command.spawn().map_err(|err| {
            let why = if err.kind() == io::ErrorKind::NotFound {
                format!("{REDIS_SERVER_MISSING} ({err})")
            } else {
                format!("cannot run redis-server: {err}")
            };
            io::Error::new(err.kind(), why)
        })?;
        self.pid = child.id();
        self.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(self.error(&format!("redis-server exited with {status}")));
                }
            }
            // Check the answering server is ours: with a TCP port, another
            // server could have taken the port before ours bound it.
            let last_answer = match ping_and_pid(&self.endpoint) {
                Ok(pid) if pid == self.pid => return Ok(()),
                Ok(pid) => format!("a different server (pid {pid}) answered"),
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(self.error(&format!(
                    "redis-server did not answer PING within {:?} (last: {last_answer}); killed it",
                    self.config.ready_timeout
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// An error whose message carries the server log.
    fn error(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{what}\n--- redis-server log ({}) ---\n{}",
            self.dir.display(),
            self.log()
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- redis-server log ({}, pid {}) ---\n{}",
                self.dir.display(),
                self.pid,
                self.log()
            );
        }
    }
}

/// The process state letter from `/proc/PID/stat` (`T` when stopped), or
/// `None` without procfs or once the process is gone.
fn process_state(pid: u32) -> Option<char> {
    // "PID (comm) STATE ...": comm may contain spaces and parentheses.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.trim_start().chars().next()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Sends a signal by name (`TERM`, `STOP`, `CONT`) through the shell's
/// `kill` builtin, which needs neither libc bindings nor procps.
fn signal(pid: u32, name: &str) -> io::Result<()> {
    let status = Command::new("sh")
        .args(["-c", r#"kill -s "$0" "$1""#, name])
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {name} {pid} exited with {status}"
        )))
    }
}

/// Sends `PING` then `INFO server` and returns the server's `process_id`;
/// fails unless the answer to `PING` is `+PONG` (e.g. `-LOADING` while the
/// AOF is replayed).
fn ping_and_pid(endpoint: &Endpoint) -> io::Result<u32> {
    const TIMEOUT: Duration = Duration::from_secs(1);
    match endpoint {
        Endpoint::Tcp(port) => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            ping_and_pid_on(stream)
        }
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            ping_and_pid_on(stream)
        }
    }
}

fn ping_and_pid_on<S: Read + Write>(mut stream: S) -> io::Result<u32> {
    stream.write_all(b"PING\r\nINFO server\r\n")?;
    let mut reader = BufReader::new(stream);
    let pong = read_line(&mut reader)?;
    if pong != "+PONG" {
        return Err(io::Error::other(format!("PING answered {pong:?}")));
    }
    let header = read_line(&mut reader)?;
    let len = header
        .strip_prefix('$')
        .and_then(|len| len.parse::<usize>().ok())
        .ok_or_else(|| io::Error::other(format!("INFO answered {header:?}")))?;
    let mut info = vec![0; len + 2];
    reader.read_exact(&mut info)?;
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| io::Error::other("INFO server has no process_id"))
}

fn read_line<R: BufRead>(reader: &mut R) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests;

mod cluster;
mod sentinel;
mod tls;

pub use cluster::{ClusterNode, RedisCluster, NODE_TIMEOUT as CLUSTER_NODE_TIMEOUT};
pub use sentinel::RedisSentinel;
pub use tls::TlsFiles;
