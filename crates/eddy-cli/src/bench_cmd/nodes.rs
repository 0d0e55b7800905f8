//! The Redis servers behind a bench URL, for what the bench measures next
//! to eddy: the raw baseline's plain connection and the servers' CPU time.
//!
//! A standalone URL is its own server. A `redis+cluster://` URL stands for
//! every master of the cluster (the CPU figure sums them), and the raw
//! baseline runs on the master that serves its streams' one hash slot: a
//! per-shard baseline, next to eddy on the same cluster. A
//! `redis+sentinel://` URL stands for the master its Sentinels name.

use crate::error::{CliError, CliResult};

fn err(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::new(format!("bench: {what}: {e}"))
}

/// `(userinfo with its '@' or "", hosts, path)` of a URL with a host list.
fn split(url: &str) -> (&str, Vec<&str>, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hosts = rest[..end].split(',').filter(|h| !h.is_empty()).collect();
    (userinfo, hosts, &rest[end..])
}

fn query_text(url: &str, cmd: &mut redis::Cmd) -> CliResult<String> {
    let mut conn = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .map_err(|e| {
            err(
                &format!("cannot connect to {}", eddy::engine::redact_url(url)),
                e,
            )
        })?;
    let v: redis::Value = cmd.query(&mut conn).map_err(|e| err("query", e))?;
    Ok(match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::SimpleString(s) => s,
        redis::Value::Int(n) => n.to_string(),
        redis::Value::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => format!("{other:?}"),
    })
}

/// The first seed of a cluster URL that answers, as a plain URL.
fn cluster_seed(url: &str) -> CliResult<String> {
    let (userinfo, hosts, _) = split(url);
    let tls = url.starts_with("rediss");
    let mut last = None;
    for host in hosts {
        let seed = format!(
            "{}://{userinfo}{host}/",
            if tls { "rediss" } else { "redis" }
        );
        match query_text(&seed, &mut redis::cmd("PING")) {
            Ok(_) => return Ok(seed),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| CliError::new("bench: the cluster URL names no node")))
}

/// A master's `host:port` and the slot ranges it serves.
type Master = (String, Vec<(u16, u16)>);

/// Every master, from `CLUSTER NODES`.
fn masters(seed: &str) -> CliResult<Vec<Master>> {
    let text = query_text(seed, redis::cmd("CLUSTER").arg("NODES"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
                return None;
            }
            let address = f[1].split('@').next()?.to_owned();
            let ranges = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| {
                    let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                    Some((lo.parse().ok()?, hi.parse().ok()?))
                })
                .collect();
            Some((address, ranges))
        })
        .collect())
}

fn plain(url: &str, address: &str, path: &str) -> String {
    let (userinfo, _, _) = split(url);
    let scheme = if url.starts_with("rediss") {
        "rediss"
    } else {
        "redis"
    };
    format!("{scheme}://{userinfo}{address}{path}")
}

/// The master a Sentinel URL names, as a plain URL.
fn sentinel_master(url: &str) -> CliResult<String> {
    let (userinfo, hosts, path) = split(url);
    let path = path.split('?').next().unwrap_or_default();
    let mut parts = path.trim_start_matches('/').split('/');
    let name = parts.next().unwrap_or_default();
    let db = parts.next().unwrap_or("0");
    let mut last = None;
    for host in hosts {
        match query_text(
            &format!("redis://{host}/"),
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(name),
        ) {
            Ok(text) => {
                let mut lines = text.lines();
                if let (Some(ip), Some(port)) = (lines.next(), lines.next()) {
                    let scheme = if url.starts_with("rediss") {
                        "rediss"
                    } else {
                        "redis"
                    };
                    return Ok(format!("{scheme}://{userinfo}{ip}:{port}/{db}"));
                }
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| CliError::new(format!("bench: no Sentinel names master `{name}`"))))
}

fn is_cluster(url: &str) -> bool {
    url.split("://")
        .next()
        .is_some_and(|s| s.ends_with("+cluster"))
}

fn is_sentinel(url: &str) -> bool {
    url.split("://")
        .next()
        .is_some_and(|s| s.ends_with("+sentinel"))
}

/// Every server the URL's data lives on (plain URLs).
pub fn servers(url: &str) -> CliResult<Vec<String>> {
    if is_cluster(url) {
        let seed = cluster_seed(url)?;
        return Ok(masters(&seed)?
            .into_iter()
            .map(|(address, _)| plain(url, &address, "/"))
            .collect());
    }
    if is_sentinel(url) {
        return Ok(vec![sentinel_master(url)?]);
    }
    Ok(vec![url.to_owned()])
}

/// The server that holds `key` (a plain URL).
pub fn server_of(url: &str, key: &str) -> CliResult<String> {
    if !is_cluster(url) {
        return Ok(servers(url)?.remove(0));
    }
    let seed = cluster_seed(url)?;
    let slot: u16 = query_text(&seed, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?
        .trim()
        .parse()
        .map_err(|e| err("CLUSTER KEYSLOT", e))?;
    masters(&seed)?
        .into_iter()
        .find(|(_, ranges)| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot)))
        .map(|(address, _)| plain(url, &address, "/"))
        .ok_or_else(|| CliError::new(format!("bench: no master serves slot {slot}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_split_into_user_info_hosts_and_path() {
        assert_eq!(
            split("redis+cluster://u:p@a:1,b:2"),
            ("u:p@", vec!["a:1", "b:2"], "")
        );
        assert_eq!(
            split("redis+sentinel://s:1,s:2/mymaster/3?x=y"),
            ("", vec!["s:1", "s:2"], "/mymaster/3?x=y")
        );
        assert_eq!(
            plain("rediss+cluster://u@a:1", "10.0.0.1:7000", "/"),
            "rediss://u@10.0.0.1:7000/"
        );
    }
}
