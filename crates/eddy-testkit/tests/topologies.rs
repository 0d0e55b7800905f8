//! eddy on Redis Cluster and behind Sentinel: the whole conformance suite on
//! a 3-master cluster with one replica each and on a master with two
//! replicas watched by three Sentinels, and the connect-time errors for a
//! URL that names the wrong topology.
//!
//! Each test starts its own topology (real `redis-server` processes on free
//! ports; see `eddy_testkit::RedisCluster` and `RedisSentinel`), shared by the
//! cases of the suite under random prefixes, and kills it at the end.

use eddy::{Eddy, ErrorKind};
use eddy_testkit::conformance::{self, SuiteReport};
use eddy_testkit::{RedisCluster, RedisSentinel, RedisServer};

/// Cases at a time on a shared topology: the suite is mostly waiting.
const PARALLEL: usize = 4;

fn assert_passed(topology: &str, report: &SuiteReport) {
    eprintln!(
        "conformance on {topology}: {} passed, {} not applicable, {} failed (of {})",
        report.passed.len(),
        report.not_applicable.len(),
        report.failed.len(),
        conformance::ALL.len()
    );
    for (case, why) in &report.not_applicable {
        eprintln!("  not applicable: {case}: {why}");
    }
    let failed: Vec<String> = report
        .failed
        .iter()
        .map(|(case, why)| format!("{case}: {why}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} case(s) failed on {topology}:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[test]
fn the_conformance_suite_passes_on_a_three_master_cluster() {
    let cluster = RedisCluster::start(3, 1).expect("start a 3-master cluster");
    let report = conformance::run_all("redis-cluster", &cluster.url(), PARALLEL);
    assert_passed("a 3-master Redis Cluster", &report);
}

#[test]
fn the_conformance_suite_passes_through_sentinel() {
    let sentinel = RedisSentinel::start(2, 3).expect("start a Sentinel deployment");
    let report = conformance::run_all("redis-sentinel", &sentinel.url(), PARALLEL);
    assert_passed("Redis behind Sentinel", &report);
}

// ---- the wrong topology for the URL ----

#[tokio::test]
async fn a_cluster_url_at_a_standalone_server_is_refused() {
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+cluster://127.0.0.1:{}", server.port());
    let err = Eddy::open(&url).await.expect_err("not a cluster");
    assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{err}");
    assert!(err.to_string().contains("not a Redis Cluster"), "{err}");
    assert!(
        err.to_string().contains("redis://"),
        "says what to use: {err}"
    );
}

#[tokio::test]
async fn a_standalone_url_at_a_cluster_node_is_refused() {
    let cluster = RedisCluster::start(3, 0).expect("cluster");
    let port = cluster.nodes()[0].port();
    let err = Eddy::open(&format!("redis://127.0.0.1:{port}/0"))
        .await
        .expect_err("a cluster node");
    assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{err}");
    assert!(
        err.to_string().contains("redis+cluster://"),
        "says what to use: {err}"
    );
}

#[tokio::test]
async fn a_standalone_url_at_a_sentinel_is_refused() {
    let sentinel = RedisSentinel::start(0, 1).expect("sentinel");
    let port = sentinel.sentinels()[0].port();
    let err = Eddy::open(&format!("redis://127.0.0.1:{port}/0"))
        .await
        .expect_err("a Sentinel");
    assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{err}");
    assert!(
        err.to_string().contains("redis+sentinel://"),
        "says what to use: {err}"
    );
}

#[tokio::test]
async fn an_unknown_sentinel_master_is_refused_by_name() {
    let sentinel = RedisSentinel::start(0, 1).expect("sentinel");
    let port = sentinel.sentinels()[0].port();
    let err = Eddy::open(&format!("redis+sentinel://127.0.0.1:{port}/nosuchmaster"))
        .await
        .expect_err("unknown master");
    assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{err}");
    assert!(
        err.to_string().contains("nosuchmaster"),
        "names the master: {err}"
    );
}

#[tokio::test]
async fn no_reachable_seed_is_unavailable() {
    // Ports nobody listens on: bound and dropped a moment ago.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        })
        .collect();
    for url in [
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1]
        ),
        format!(
            "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/eddy",
            ports[0], ports[1]
        ),
    ] {
        let err = eddy::EddyBuilder::new(url.clone())
            .redis_options(eddy::engine::redis::RedisOptions::default().connect_attempts(2))
            .open()
            .await
            .expect_err("nothing listens");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{url}: {err}");
    }
}

#[tokio::test]
async fn malformed_topology_urls_are_refused_before_connecting() {
    for (url, says) in [
        ("redis+cluster://", "host"),
        ("redis+cluster://127.0.0.1:1/3", "database 0"),
        ("redis+cluster://127.0.0.1:1?timeout=3", "no parameters"),
        ("redis+sentinel://127.0.0.1:1", "name the master"),
        ("redis+sentinel://127.0.0.1:1/eddy/x", "database index"),
        (
            "redis+sentinel://127.0.0.1:1/eddy?tls=1",
            "unknown parameter",
        ),
        ("redis+cluster://127.0.0.1:notaport", "port"),
    ] {
        let err = Eddy::open(url).await.expect_err(url);
        assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{url}: {err}");
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
}
