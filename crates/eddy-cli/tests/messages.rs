//! What the `eddy` binary shows, against real redis-servers of the tests'
//! own: a password in the URL never appears in any output (errors, `eddy
//! demo`, the shop services' startup line, `--json`, debug logs); a
//! connection that cannot work fails at once with a message that says why;
//! server errors carry no script internals; logs claim only what happened.

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

    /// Assert a failure; return its error message: the `error: ...` line,
    /// or with --json the `{"error": ...}` line (stderr also holds debug
    /// logs).
    fn fails(&self) -> String {
        assert_eq!(self.code, Some(1), "{self:#?}");
        self.stderr
            .lines()
            .rev()
            .find_map(|l| {
                l.strip_prefix("error: ").map(str::to_owned).or_else(|| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()?
                        .get("error")?
                        .as_str()
                        .map(str::to_owned)
                })
            })
            .unwrap_or_else(|| panic!("no error line: {self:#?}"))
    }
}

/// Run `eddy --url URL ARGS...` with debug logs on, so every log line is
/// checked too.
fn eddy(url: &str, args: &[&str]) -> Run {
    eddy_with_env(url, args, &[])
}

/// [`eddy`] with more environment variables set.
fn eddy_with_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--url", url])
        .args(args)
        .env_remove("EDDY_URL")
        .env_remove("EDDY_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
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

/// A plain TCP server.
fn tcp_server() -> RedisServer {
    RedisServer::start().expect("start redis-server")
}

#[test]
fn rediss_to_a_plaintext_server_fails_fast_and_says_so() {
    let server = tcp_server();
    let url = format!("rediss://127.0.0.1:{}/0", server.port());
    for args in [&["queue", "list"][..], &["queue", "info", "q"]] {
        let run = eddy(&url, args);
        let err = run.fails();
        assert!(
            run.elapsed < Duration::from_secs(5),
            "took {:?}: {err}",
            run.elapsed
        );
        assert!(err.contains("TLS handshake failed"), "{err}");
        assert!(err.contains("use redis://"), "{err}");
        assert!(!err.contains("outcome is unknown"), "{err}");
    }
}

#[test]
fn a_db_index_out_of_range_fails_at_once() {
    let server = tcp_server();
    let url = format!("redis://127.0.0.1:{}/99", server.port());
    let run = eddy(&url, &["--json", "queue", "list"]);
    let err = run.fails();
    assert!(
        run.elapsed < Duration::from_secs(2),
        "took {:?}: {err}",
        run.elapsed
    );
    assert!(err.contains("out of range"), "{err}");
    assert!(err.contains("databases"), "{err}");
    assert!(!err.contains("is redis-server running"), "{err}");
    assert!(!err.contains("attempt"), "{err}");
    let socket = RedisServer::builder()
        .unix_socket(true)
        .start()
        .expect("start redis-server");
    let run = eddy(&socket_url(&socket, "db=99"), &["queue", "list"]);
    let err = run.fails();
    assert!(err.contains("out of range"), "{err}");
}

/// A queue whose DLQ key was overwritten by a string, with one entry that
/// is not JSON, so that reading it tries (and fails) to dead-letter it.
fn queue_with_a_broken_dlq(server: &RedisServer) -> String {
    let url = format!("redis://127.0.0.1:{}/0", server.port());
    assert_eq!(eddy(&url, &["queue", "create", "q"]).code, Some(0));
    server
        .redis_cli(["XADD", "mq:q", "*", "data", "not json"])
        .expect("XADD");
    server.redis_cli(["DEL", "mq:q:dlq"]).expect("DEL");
    server.redis_cli(["SET", "mq:q:dlq", "x"]).expect("SET");
    url
}

#[test]
fn wrong_type_errors_name_the_key_not_the_script() {
    let server = tcp_server();
    let url = queue_with_a_broken_dlq(&server);
    let run = eddy(&url, &["queue", "receive", "q"]);
    let err = run.fails();
    let line = err;
    assert!(
        line.contains("mq:q:dlq") && line.contains("string"),
        "{line}"
    );
    assert!(!line.contains("user_script"), "{line}");
    assert!(!line.contains("script:"), "{line}");
    let hex_run = line
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(hex_run < 40, "a script SHA in {line}");
}

#[test]
fn a_failed_dead_letter_move_is_not_logged_as_done() {
    let server = tcp_server();
    let url = queue_with_a_broken_dlq(&server);
    let run = eddy(&url, &["queue", "receive", "q"]);
    run.fails();
    assert!(
        !run.stderr.contains("moved to the dead-letter queue"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("not dead-lettered"), "{run:#?}");
    assert_eq!(server.redis_cli(["XLEN", "mq:q"]).expect("XLEN"), "1");
}

/// The demo on the embedded engine: services that log inside their
/// delivery spans.
const DEMO: [&str; 5] = ["demo", "--orders", "2", "--seed", "1"];

#[test]
fn json_logs_are_one_object_per_line_with_the_delivery_span() {
    let flag = [&["--log-format", "json"][..], &DEMO].concat();
    for run in [
        eddy_with_env("memory://", &flag, &[]),
        eddy_with_env("memory://", &DEMO, &[("EDDY_LOG_FORMAT", "json")]),
    ] {
        assert_eq!(run.code, Some(0), "{run:#?}");
        let lines: Vec<serde_json::Value> = run
            .stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(lines.len() > 1, "{run:#?}");
        assert!(lines.iter().all(|l| l.is_object()), "{run:#?}");
        let span = lines
            .iter()
            .map(|l| &l["span"])
            .find(|s| s["name"] == "delivery")
            .unwrap_or_else(|| panic!("no line in a delivery span: {run:#?}"));
        assert!(span["messaging.destination.name"]
            .as_str()
            .is_some_and(|q| q.starts_with("sub:")));
        assert!(span["messaging.eddy.event_type"].is_string(), "{span}");
        assert_eq!(span["messaging.eddy.delivery_count"], 1);
    }
}

#[test]
fn logs_to_a_pipe_have_no_colours() {
    let text = [&["--log-format", "text"][..], &DEMO].concat();
    for run in [
        eddy_with_env("memory://", &text, &[]),
        eddy_with_env("memory://", &DEMO, &[("NO_COLOR", "1")]),
    ] {
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(
            run.stderr
                .contains("delivery{messaging.destination.name=sub:"),
            "{run:#?}"
        );
        assert!(!run.stderr.contains("\x1b["), "{run:#?}");
    }
}
