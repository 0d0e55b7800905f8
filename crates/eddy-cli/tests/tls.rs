//! Fault row 24, the TLS half: `rediss://` against a local `redis-server`
//! that listens with TLS, with a CA and a certificate the test makes. The
//! client trusts the CA through `SSL_CERT_FILE` (OpenSSL's), set for the
//! `eddy` process only. A server that requires TLS never gets plaintext:
//! without the CA the certificate is refused, and a `redis://` URL at the
//! TLS port fails at once.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_testkit::{RedisServer, TlsFiles};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn eddy(url: &str, ca: Option<&std::path::Path>, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command
        .args(["--url", url])
        .args(args)
        .env_remove("EDDY_URL")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    let started = Instant::now();
    let out = command.output().expect("run eddy");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[test]
fn rediss_works_with_the_servers_ca_and_never_falls_back_to_plaintext() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tls = TlsFiles::generate(dir.path()).expect("certificates (openssl)");
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    // The plaintext port stays for the test kit's readiness check and
    // nothing else; eddy is only ever pointed at the TLS port.
    let server = RedisServer::builder()
        .arg("--tls-port", tls_port.to_string())
        .arg("--tls-cert-file", &tls.cert)
        .arg("--tls-key-file", &tls.key)
        .arg("--tls-ca-cert-file", &tls.ca)
        .arg("--tls-auth-clients", "no")
        .start()
        .expect("a TLS redis-server");
    let url = format!("rediss://localhost:{tls_port}/0");

    // Trusting the CA: every command works over TLS.
    let created = eddy(&url, Some(&tls.ca), &["queue", "create", "secure"]);
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let sent = eddy(
        &url,
        Some(&tls.ca),
        &["queue", "send", "secure", r#"{"n": 1}"#],
    );
    assert_eq!(sent.code, Some(0), "{}", sent.stderr);
    let got = eddy(
        &url,
        Some(&tls.ca),
        &["--json", "queue", "receive", "secure", "--ack"],
    );
    assert_eq!(got.code, Some(0), "{}", got.stderr);
    assert!(got.stdout.contains(r#""data":{"n": 1}"#), "{}", got.stdout);
    assert!(
        server.redis_cli(["XLEN", "mq:secure"]).expect("redis-cli") == "1",
        "the message went through the TLS port to this server"
    );

    // Without the CA: the certificate is refused; nothing is sent in the
    // clear instead.
    let refused = eddy(&url, None, &["queue", "list"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    let err = refused.stderr.to_lowercase();
    assert!(
        err.contains("certificate"),
        "names the certificate: {}",
        refused.stderr
    );
    assert!(refused.took < Duration::from_secs(10), "{:?}", refused.took);

    // A plaintext URL at the TLS port fails at once.
    let plain = eddy(
        &format!("redis://localhost:{tls_port}/0"),
        None,
        &["queue", "list"],
    );
    assert_eq!(plain.code, Some(1), "{}", plain.stdout);
    assert!(
        plain.took < Duration::from_secs(15),
        "{:?}: {}",
        plain.took,
        plain.stderr
    );
    assert!(
        plain.stderr.contains("rediss://"),
        "says to use TLS: {}",
        plain.stderr
    );
    eprintln!(
        "rediss:// ok; without the CA: {}; plaintext at the TLS port after {:?}: {}",
        refused.stderr.trim(),
        plain.took,
        plain.stderr.trim()
    );
}
