//! Fault row 24, the ACL half: the least-privilege user the README gives
//! runs the whole conformance suite, and a user missing a permission gets a
//! startup error that names it. (The TLS half is in eddy-cli's `tls.rs`,
//! where the client's trusted CA can be set per process.)

use eddy::{Eddy, ErrorKind};
use eddy_testkit::conformance;
use eddy_testkit::RedisServer;

/// The README's least-privilege ACL line, password aside. Checked against
/// the README below so that the two cannot drift apart.
const ACL: &str = "ACL SETUSER eddy on >CHANGE-ME resetkeys ~mq:* ~events:* ~webhook:* \
    resetchannels -@all +@stream +@hash +@set +@sortedset +del +exists +type +time +info \
    +ping +hello +auth +client|setname +select +multi +exec +discard +eval \
    +evalsha +script|load +cluster|slots +cluster|shards +cluster|nodes +cluster|info +readonly";

/// Runs `ACL SETUSER` from a line of words on `server`, with `extra` rules
/// appended.
fn set_user(server: &RedisServer, line: &str, extra: &[&str]) {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    words.extend_from_slice(extra);
    let out = server.redis_cli(&words).expect("redis-cli");
    assert_eq!(out, "OK", "{line} {extra:?}");
}

fn url(server: &RedisServer, user: &str) -> String {
    format!("redis://{user}:CHANGE-ME@127.0.0.1:{}/0", server.port())
}

#[test]
fn the_readmes_acl_line_is_this_one() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let flat: String = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let line: String = ACL.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&line),
        "the README's ACL line differs from:\n{line}"
    );
}

#[test]
fn the_least_privilege_user_passes_the_conformance_suite() {
    let server = RedisServer::start().expect("redis-server");
    // The suite's prefixes are `t<random>:`; eddy's own are in the line.
    set_user(&server, ACL, &["~t*"]);
    let report = conformance::run_all("redis-acl", &url(&server, "eddy"), 4);
    for (case, why) in &report.failed {
        eprintln!("FAILED {case}: {why}");
    }
    assert!(
        report.failed.is_empty(),
        "{} case(s) failed as the least-privilege user",
        report.failed.len()
    );
    eprintln!(
        "as the least-privilege user: {} passed, {} not applicable",
        report.passed.len(),
        report.not_applicable.len()
    );
}

#[tokio::test]
async fn a_missing_permission_is_a_startup_error_that_names_it() {
    let server = RedisServer::start().expect("redis-server");
    let cases: [(&str, &[&str], &str); 4] = [
        ("no-xclaim", &["-xclaim"], "XCLAIM"),
        ("no-info", &["-info"], "INFO"),
        ("no-evalsha", &["-evalsha"], "evalsha"),
        ("other-keys", &["resetkeys", "~other:*"], "mq:"),
    ];
    for (user, rules, named) in cases {
        let line = ACL.replace("SETUSER eddy", &format!("SETUSER {user}"));
        set_user(&server, &line, rules);
        let err = Eddy::open(&url(&server, user))
            .await
            .expect_err("a permission is missing");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{user}: {err}");
        assert!(
            err.to_string()
                .to_lowercase()
                .contains(&named.to_lowercase()),
            "{user}: names {named}: {err}"
        );
        assert!(
            !err.to_string().contains("CHANGE-ME"),
            "{user}: the password is hidden: {err}"
        );
    }
    // The full line opens.
    set_user(&server, ACL, &[]);
    Eddy::open(&url(&server, "eddy"))
        .await
        .expect("the least-privilege user opens");
}
