//! `eddy dashboard` as a process, against a redis-server started per test:
//! its API after a known setup, the token rules (checked against what
//! Redis holds), and a headless Chromium requeueing through the page.
//!
//! The browser test needs `apt-get install -y chromium chromium-driver` and
//! `npm ci` in crates/eddy-cli/tests/browser; without them it fails saying
//! so, unless EDDY_SKIP_BROWSER=1.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eddy::bus::{Bus, Subscription};
use eddy::{Eddy, Receive};
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

/// A running `eddy dashboard`, killed on drop.
struct Dashboard {
    child: Child,
    addr: String,
}

impl Dashboard {
    /// `eddy --url URL dashboard --listen 127.0.0.1:0 [--token T]`, once it
    /// prints where it listens.
    fn start(url: &str, token: Option<&str>) -> Self {
        let mut args = vec!["--url", url, "dashboard", "--listen", "127.0.0.1:0"];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        let (child, line, _) = spawn(&args);
        let addr = line
            .trim()
            .strip_prefix("dashboard on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A request; the status and the body (JSON when it parses).
    fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let answer = eddy_testkit::http::request(
            &self.addr,
            method,
            path,
            headers,
            body,
            Duration::from_secs(10),
        )
        .unwrap();
        let body = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body));
        (answer.status, body)
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.http("GET", path, &[], "");
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the eddy binary with `args`; the child, its first stdout line, and
/// its stderr (read to the end in a thread).
fn spawn(args: &[&str]) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env_remove("EDDY_URL")
        .env_remove("EDDY_DASHBOARD_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the eddy binary");
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line, errors)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The shop's queues: `payments` with 4 messages, 3 of them dead-lettered
/// after a delivery to `payment-worker` (two card declines, a timeout);
/// `shipments` with 3 messages, 1 pending at `shipping-worker`; an empty
/// `notifications`; routes of the shop's event types.
async fn fill(url: &str) {
    let mq = Eddy::open(url).await.unwrap();
    let (payments, _) = mq.create_queue_pair("payments").await.unwrap();
    for i in 0..4 {
        payments
            .send(&json!({ "order_id": format!("ORD-{i:04}"), "amount": 57.25 + f64::from(i) }))
            .await
            .unwrap();
    }
    let got = payments
        .receive(&Receive::new().count(3).consumer("payment-worker"))
        .await
        .unwrap();
    for (m, reason) in got.iter().zip([
        "PaymentDeclined: card expired",
        "Timeout: payment gateway did not answer in 5s",
        "PaymentDeclined: insufficient funds",
    ]) {
        payments.dead_letter(&[m.id], reason).await.unwrap();
    }
    let (shipments, _) = mq.create_queue_pair("shipments").await.unwrap();
    for i in 0..3 {
        shipments
            .send(&json!({ "order_id": format!("ORD-{i:04}"), "carrier": "DHL" }))
            .await
            .unwrap();
    }
    shipments
        .receive(&Receive::new().count(1).consumer("shipping-worker"))
        .await
        .unwrap();
    mq.create_queue_pair("notifications").await.unwrap();
    let bus = Bus::with_engine(mq.engine().clone()).await.unwrap();
    for (service, types) in [
        ("payment-service", vec!["order.created"]),
        ("shipping-service", vec!["payment.succeeded"]),
        (
            "notification-service",
            vec!["order.shipped", "payment.failed"],
        ),
    ] {
        bus.subscribe(service, &Subscription::types(types))
            .await
            .unwrap();
    }
    bus.subscribe("audit-service", &Subscription::All)
        .await
        .unwrap();
}

/// What Redis holds for a queue and its DLQ: every entry of both streams.
fn redis_state(server: &RedisServer, queue: &str) -> (String, String) {
    let range = |key: String| {
        server
            .redis_cli(["XRANGE", key.as_str(), "-", "+"])
            .unwrap()
    };
    (
        range(format!("mq:{queue}")),
        range(format!("mq:{queue}:dlq")),
    )
}

fn xlen(server: &RedisServer, key: &str) -> u64 {
    server
        .redis_cli(["XLEN", key])
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The ids of a DLQ, oldest first, from the API.
fn dlq_ids(d: &Dashboard, queue: &str) -> Vec<String> {
    d.get(&format!("/api/queues/{queue}/dlq"))["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn the_api_shows_the_queues_their_consumers_dlq_and_routes() {
    let server = RedisServer::start().unwrap();
    runtime().block_on(fill(&server.url()));
    let d = Dashboard::start(&server.url(), None);

    let queues = d.get("/api/queues")["queues"].clone();
    let rows: Vec<(String, u64, u64, u64, u64)> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["ready"].as_u64().unwrap(),
                q["unacked"].as_u64().unwrap(),
                q["dead_lettered"].as_u64().unwrap(),
                q["delayed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("notifications".into(), 0, 0, 0, 0),
            ("payments".into(), 1, 0, 3, 0),
            ("shipments".into(), 2, 1, 0, 0),
        ]
    );

    let shipments = d.get("/api/queues/shipments");
    assert_eq!(
        shipments["queue"]["consumers"][0]["name"],
        "shipping-worker"
    );
    assert_eq!(shipments["queue"]["consumers"][0]["pending"], 1);

    let dlq = d.get("/api/queues/payments/dlq");
    assert_eq!(dlq["length"], 3);
    let reasons: Vec<&str> = dlq["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "PaymentDeclined: card expired",
            "Timeout: payment gateway did not answer in 5s",
            "PaymentDeclined: insufficient funds",
        ]
    );
    assert_eq!(
        dlq["messages"][0]["data"],
        json!({ "order_id": "ORD-0000", "amount": 57.25 })
    );

    let id = dlq["messages"][1]["id"].as_str().unwrap();
    let found = d.get(&format!("/api/messages/{id}?queue=payments"));
    assert_eq!(found["found"][0]["in_dlq"], true);
    assert_eq!(
        found["found"][0]["message"]["failures"][0]["reason"],
        "Timeout: payment gateway did not answer in 5s"
    );

    let routes = d.get("/api/routes")["routes"].clone();
    assert_eq!(
        routes[0],
        json!({ "event_type": "*", "services": ["audit-service"] })
    );
    assert!(routes.as_array().unwrap().contains(
        &json!({ "event_type": "payment.failed", "services": ["notification-service"] })
    ));

    // The sampler's first sample is taken at start.
    let points = d.get("/api/throughput?queue=payments")["points"].clone();
    assert_eq!(points[0]["dead_lettered"], 3, "{points}");
    assert!(d.get("/api/throughput")["rates"].is_array());

    let (status, metrics) = d.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains("payments"), "{metrics}");
    let (status, page) = d.http("GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("eddy dashboard"));
}

#[test]
fn without_a_token_every_action_is_refused_and_nothing_changes() {
    let server = RedisServer::start().unwrap();
    runtime().block_on(fill(&server.url()));
    let d = Dashboard::start(&server.url(), None);
    let before = redis_state(&server, "payments");
    let ids = dlq_ids(&d, "payments");
    let one = json!({ "ids": [ids[0]] }).to_string();
    for (path, body) in [
        ("/api/queues/payments/dlq/requeue", one.as_str()),
        ("/api/queues/payments/dlq/requeue-all", "{}"),
        (
            "/api/queues/payments/dlq/requeue-reason",
            r#"{"reason":"Timeout"}"#,
        ),
        ("/api/queues/payments/dlq/delete", one.as_str()),
        ("/api/queues/payments/delete", one.as_str()),
    ] {
        let auth = ("Authorization", "Bearer anything");
        let (status, answer) = d.http("POST", path, &[JSON, auth], body);
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("restart it with --token"),
            "{answer}"
        );
    }
    assert_eq!(redis_state(&server, "payments"), before);
    assert_eq!(d.get("/api/overview")["read_only"], true);
}

#[test]
fn with_a_token_only_a_same_site_json_request_carrying_it_acts() {
    let server = RedisServer::start().unwrap();
    runtime().block_on(fill(&server.url()));
    let d = Dashboard::start(&server.url(), Some("s3cret-t0ken"));
    let before = redis_state(&server, "payments");
    let ids = dlq_ids(&d, "payments");
    let path = "/api/queues/payments/dlq/requeue";
    let one = json!({ "ids": [ids[0]] }).to_string();

    let (status, _) = d.http("POST", path, &[JSON], &one);
    assert_eq!(status, 401, "no token");
    let (status, _) = d.http(
        "POST",
        path,
        &[JSON, ("Authorization", "Bearer s3cret-t0keN")],
        &one,
    );
    assert_eq!(status, 401, "wrong token");
    let (status, _) = d.http("POST", path, &[JSON, ("X-Eddy-Token", "s3cret")], &one);
    assert_eq!(status, 401, "a prefix of the token");
    // What another site's HTML form can send: a form body, its own Origin.
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "http://evil.example"),
    ];
    let (status, _) = d.http("POST", path, &form, &format!("ids={}", ids[0]));
    assert_eq!(status, 403, "cross-site form post");
    let (status, _) = d.http("POST", path, &form[..1], &format!("ids={}", ids[0]));
    assert_eq!(status, 415, "form body");
    let right = ("Authorization", "Bearer s3cret-t0ken");
    let (status, _) = d.http(
        "POST",
        path,
        &[JSON, right, ("Origin", "http://evil.example")],
        &one,
    );
    assert_eq!(status, 403, "the token, from another site's page");
    assert_eq!(redis_state(&server, "payments"), before);

    let own = format!("http://{}", d.addr);
    let (status, answer) = d.http("POST", path, &[JSON, right, ("Origin", &own)], &one);
    assert_eq!((status, &answer), (200, &json!({ "requeued": 1 })));
    assert_eq!(xlen(&server, "mq:payments:dlq"), 2);
    assert_eq!(
        xlen(&server, "mq:payments"),
        2,
        "the requeued message and the one never received"
    );

    let (status, answer) = d.http(
        "POST",
        "/api/queues/payments/dlq/requeue-reason",
        &[JSON, ("X-Eddy-Token", "s3cret-t0ken")],
        r#"{"reason":"PaymentDeclined"}"#,
    );
    assert_eq!((status, &answer), (200, &json!({ "requeued": 1 })));
    let left = d.get("/api/queues/payments/dlq");
    assert_eq!(
        left["messages"][0]["reason"],
        "Timeout: payment gateway did not answer in 5s"
    );

    let remaining = dlq_ids(&d, "payments");
    let (status, answer) = d.http(
        "POST",
        "/api/queues/payments/dlq/delete",
        &[JSON, right],
        &json!({ "ids": remaining }).to_string(),
    );
    assert_eq!((status, &answer), (200, &json!({ "deleted": 1 })));
    assert_eq!(xlen(&server, "mq:payments:dlq"), 0);
    assert_eq!(xlen(&server, "mq:payments"), 3);
}

#[test]
fn on_the_embedded_engine_it_serves_its_own_empty_engine() {
    let d = Dashboard::start("memory://", None);
    assert_eq!(d.get("/api/queues")["queues"], json!([]));
    assert_eq!(d.get("/api/routes")["routes"], json!([]));
    let (status, _) = d.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let (status, _) = d.http("GET", "/api/queues/orders", &[], "");
    assert_eq!(status, 404);
}

#[test]
fn a_non_loopback_address_is_served_with_a_warning() {
    let (mut child, line, stderr) = spawn(&["dashboard", "--listen", "0.0.0.0:0"]);
    assert!(line.starts_with("dashboard on http://0.0.0.0:"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    let stderr = stderr.join().unwrap();
    assert!(
        stderr.contains("warning:") && stderr.contains("not loopback"),
        "{stderr}"
    );
}

/// What the browser test needs, or why it cannot run.
fn browser_setup() -> Result<(PathBuf, String), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing: install it with `apt-get install -y chromium chromium-driver`"
        ));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is missing: run `npm ci` in {} (needs node and npm: `apt-get install -y nodejs npm`)",
            dir.display()
        ));
    }
    Ok((dir, chromium))
}

#[test]
fn browser_requeues_through_the_page() {
    let (dir, chromium) = match browser_setup() {
        Ok(setup) => setup,
        Err(why) if std::env::var("EDDY_SKIP_BROWSER").as_deref() == Ok("1") => {
            eprintln!("browser_requeues_through_the_page SKIPPED (EDDY_SKIP_BROWSER=1): {why}");
            return;
        }
        Err(why) => panic!("{why} (or set EDDY_SKIP_BROWSER=1 to skip this test)"),
    };
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    rt.block_on(fill(&server.url()));
    let d = Dashboard::start(&server.url(), Some("browser-t0ken"));
    let screenshot = std::env::var("EDDY_DASHBOARD_SCREENSHOT").map_or_else(
        |_| std::env::temp_dir().join(format!("eddy-dashboard-{}.png", std::process::id())),
        PathBuf::from,
    );
    // Orders keep arriving while the page is open, for the chart.
    let url = server.url();
    let sender = std::thread::spawn(move || {
        runtime().block_on(async {
            let mq = Eddy::open(&url).await.unwrap();
            let q = mq.queue("shipments").await.unwrap();
            for i in 0..40 {
                q.send(&json!({ "order_id": format!("ORD-{:04}", 100 + i), "carrier": "UPS" }))
                    .await
                    .unwrap();
                // A packer settles every other one, for the throughput chart.
                if i % 2 == 1 {
                    let got = q
                        .receive(&Receive::new().count(1).consumer("packer"))
                        .await
                        .unwrap();
                    let ids: Vec<_> = got.iter().map(|m| m.id).collect();
                    q.ack(&ids).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
    });
    let out = Command::new("node")
        .arg(dir.join("requeue.js"))
        .current_dir(&dir)
        .env("DASHBOARD_URL", d.url())
        .env("DASHBOARD_TOKEN", "browser-t0ken")
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .env("REQUEUE_QUEUE", "payments")
        .env(
            "EXPECT",
            json!({ "payments": { "ready": 1, "dlq": 3 }, "notifications": { "ready": 0, "dlq": 0 } })
                .to_string(),
        )
        .output()
        .expect("run node (install it with `apt-get install -y nodejs npm`)");
    sender.join().unwrap();
    assert!(
        out.status.success(),
        "the browser script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let requeued = answer["requeued"].as_str().unwrap();
    assert_eq!(xlen(&server, "mq:payments:dlq"), 2);
    assert!(!dlq_ids(&d, "payments").iter().any(|id| id == requeued));
    let ready = d.get("/api/queues")["queues"][1].clone();
    assert_eq!(
        (ready["name"].as_str(), ready["ready"].as_u64()),
        (Some("payments"), Some(2))
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
