//! The `eddy` binary's connection messages against real redis-servers of the
//! tests' own: a password in the URL never appears in any output (errors,
//! `eddy demo`, the shop services' startup line, `--json`, debug logs), and
//! a connection that cannot work fails at once with a message that says why.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use eddy_testkit::RedisServer;

const SECRET: &str = "SECRETpw42";

/// One run of the binary.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Stdout and stderr together.
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn assert_no_secret(&self) {
        assert!(
            !self.all().contains(SECRET),
            "the password is shown: {self:#?}"
        );
    }

    /// Assert a failure; return stderr.
    fn fails(&self) -> &str {
        assert_eq!(self.code, Some(1), "{self:#?}");
        &self.stderr
    }
}

/// Run `eddy --url URL ARGS...` with debug logs on, so every log line is
/// checked too.
fn eddy(url: &str, args: &[&str]) -> Run {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--url", url])
        .args(args)
        .env_remove("EDDY_URL")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .expect("run the eddy binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Start `eddy --url URL [--json] shop payment-service`, return its first
/// stdout line (the startup line) and stderr so far, then kill it.
fn shop_startup_line(url: &str, json: bool) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
    cmd.args(["--url", url]);
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .args(["shop", "payment-service"])
        .env_remove("EDDY_URL")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the eddy binary");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait for eddy");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = line.unwrap_or_else(|_| panic!("no startup line; stderr: {stderr}"));
    (line, stderr)
}

/// A unix-socket server that requires `SECRET`.
fn unix_server_with_password() -> RedisServer {
    let server = RedisServer::builder()
        .unix_socket(true)
        .start()
        .expect("start redis-server");
    server
        .redis_cli(["CONFIG", "SET", "requirepass", SECRET])
        .expect("set a password");
    server
}

fn socket_url(server: &RedisServer, query: &str) -> String {
    let path = server.socket_path().expect("a unix-socket server");
    format!("redis+unix://{}?{query}", path.display())
}

#[test]
fn unix_socket_password_is_never_shown() {
    let server = unix_server_with_password();
    for query in [
        format!("pass={SECRET}"),
        format!("db=0&pass={SECRET}"),
        format!("PASSWORD=x&pass={SECRET}"),
    ] {
        let url = socket_url(&server, &query);
        let run = eddy(&url, &["queue", "create", "q"]);
        assert_eq!(run.code, Some(0), "{run:#?}");
        run.assert_no_secret();
        for args in [&["queue", "list"][..], &["--json", "queue", "list"]] {
            let run = eddy(&url, args);
            assert_eq!(run.code, Some(0), "{run:#?}");
            run.assert_no_secret();
        }
    }
    let url = socket_url(&server, &format!("pass={SECRET}"));

    let demo = eddy(&url, &["demo", "--orders", "2", "--seed", "1"]);
    assert_eq!(demo.code, Some(0), "{demo:#?}");
    demo.assert_no_secret();
    assert!(demo.stdout.contains("pass=***"), "{demo:#?}");
    let demo = eddy(&url, &["--json", "demo", "--orders", "1"]);
    assert_eq!(demo.code, Some(0), "{demo:#?}");
    demo.assert_no_secret();

    for json in [false, true] {
        let (line, stderr) = shop_startup_line(&url, json);
        assert!(!line.contains(SECRET), "startup line: {line}");
        assert!(!stderr.contains(SECRET), "stderr: {stderr}");
        assert!(line.contains("pass=***"), "startup line: {line}");
        if json {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            assert!(
                v["engine"]
                    .as_str()
                    .is_some_and(|e| e.ends_with("?pass=***")),
                "{v}"
            );
        }
    }

    // A wrong password and a socket that does not exist: errors, no secret.
    let wrong = socket_url(&server, &format!("pass={SECRET}x"));
    let run = eddy(&wrong, &["--json", "queue", "list"]);
    run.fails();
    run.assert_no_secret();
    let missing = format!("redis+unix:///nonexistent/eddy.sock?pass={SECRET}");
    for args in [
        &["queue", "list"][..],
        &["--json", "queue", "list"],
        &["demo"],
    ] {
        let run = eddy(&missing, args);
        run.fails();
        run.assert_no_secret();
    }
}

#[test]
fn tcp_user_info_without_a_colon_is_hidden() {
    let server = RedisServer::start().expect("start redis-server");
    // No password on the server: the redis crate sends no AUTH for a user
    // name alone, so this connects and the demo's summary names the URL.
    let url = format!("redis://{SECRET}@127.0.0.1:{}/0", server.port());
    let demo = eddy(&url, &["demo", "--orders", "1"]);
    assert_eq!(demo.code, Some(0), "{demo:#?}");
    demo.assert_no_secret();
    let (line, stderr) = shop_startup_line(&url, true);
    assert!(
        !line.contains(SECRET) && !stderr.contains(SECRET),
        "{line}\n{stderr}"
    );

    let down = format!("redis://u:{SECRET}@127.0.0.1:1/0");
    let run = eddy(&down, &["queue", "list"]);
    run.fails();
    run.assert_no_secret();
    // An engine URL eddy does not know is shown in the error too.
    let unknown = format!("redis+cluster://:{SECRET}@127.0.0.1:1,127.0.0.1:2");
    let run = eddy(&unknown, &["queue", "list"]);
    run.fails();
    run.assert_no_secret();
}
