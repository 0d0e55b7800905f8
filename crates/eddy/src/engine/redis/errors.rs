//! Redis errors as eddy shows them: each as an [`Error`] whose kind says
//! what the caller can do, its text without script internals, and the
//! first connection's failures that retrying cannot fix.

use std::time::Duration;

use redis::Client;

use super::RedisOptions;
use crate::error::{Error, ErrorKind};

pub(super) fn map_err(e: redis::RedisError) -> Error {
    map_err_as(e, false)
}

/// [`map_err`] for a command that writes: a timeout leaves its outcome
/// unknown, and the message says so.
pub(super) fn map_write_err(e: redis::RedisError) -> Error {
    map_err_as(e, true)
}

fn map_err_as(e: redis::RedisError, write: bool) -> Error {
    let code = e.code().unwrap_or_default();
    let kind = match code {
        "EDDY_NOQUEUE" => ErrorKind::QueueNotFound,
        "EDDY_NOSTREAM" => ErrorKind::StreamMissing,
        "EDDY_QUEUE_FULL" => ErrorKind::QueueFull,
        "NOGROUP" => ErrorKind::NoGroup,
        "OOM" => ErrorKind::OutOfMemory,
        "READONLY" => ErrorKind::ReadOnly,
        "WRONGTYPE" => ErrorKind::WrongType,
        "NOPERM" | "NOAUTH" | "WRONGPASS" => ErrorKind::PermissionDenied,
        "CROSSSLOT" => ErrorKind::CrossSlot,
        // UNBLOCKED: a blocking read ended because the node became a
        // replica (a failover); MASTERDOWN, CLUSTERDOWN, TRYAGAIN: the
        // topology is changing; MOVED, ASK: a slot moved and a pipeline's
        // re-issues did not catch up with it (nothing was executed). Each
        // passes once it settles.
        "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "UNBLOCKED" | "MOVED" | "ASK" => {
            ErrorKind::Unavailable
        }
        // A node the cluster client has no connection to yet (a replica
        // just promoted): the next call reconnects.
        _ if e.kind() == redis::ErrorKind::ClusterConnectionNotFound => ErrorKind::Unavailable,
        _ if e.is_timeout() => ErrorKind::Timeout,
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Backend,
    };
    let text = error_text(&e);
    let message = match kind {
        ErrorKind::QueueNotFound => format!(
            "queue `{}` does not exist: create it first",
            e.detail().unwrap_or_default()
        ),
        ErrorKind::StreamMissing => {
            return crate::engine::stream_missing(e.detail().unwrap_or_default()).with_source(e);
        }
        ErrorKind::QueueFull => format!(
            "queue `{}`; nothing was sent: retry later or raise its max length",
            e.detail().unwrap_or_default()
        ),
        ErrorKind::OutOfMemory => format!("Redis is out of memory; nothing was written: {text}"),
        ErrorKind::ReadOnly => {
            format!("Redis is a read-only replica; connect to the primary: {text}")
        }
        ErrorKind::WrongType => format!(
            "{text}: something else wrote this key under eddy's prefix; nothing was written: \
             inspect the key (TYPE) and remove it, or use another prefix"
        ),
        ErrorKind::Timeout if write => format!(
            "Redis did not answer in time, so the write's outcome is unknown (check before sending it again): {text}"
        ),
        ErrorKind::Timeout => {
            format!("Redis did not answer in time: {text}; retry, or raise the response timeout")
        }
        ErrorKind::Unavailable => format!("Redis is unavailable: {text}"),
        _ => format!("Redis error: {text}"),
    };
    Error::new(kind, message).with_source(e)
}

/// A failed MULTI/EXEC as the error of its first failing command (e.g.
/// NOGROUP from the XREADGROUP of a deleted queue, OOM from any of them).
pub(super) fn map_transaction_err(
    e: redis::RedisError,
    map: fn(redis::RedisError) -> Error,
) -> Error {
    let first = e
        .clone()
        .into_server_errors()
        .and_then(|errs| errs.first().map(|(_, se)| se.clone()));
    match first {
        Some(first) => map(redis::RedisError::from(first)),
        None => map(e),
    }
}

/// A Redis error as text for people: a server error as `CODE detail`
/// without what Redis appends for a script (its SHA, `@user_script` line
/// numbers), which says nothing to the caller.
pub(super) fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {}", strip_script_location(detail)),
        _ => strip_script_location(&e.to_string()),
    }
}

/// `text` without Redis's script locations: ` script: SHA, on
/// @user_script:N.` and `user_script:N: ` (with or without `@`).
fn strip_script_location(text: &str) -> String {
    let mut out = text.to_owned();
    while let Some(at) = out.find("script: ") {
        let sha_start = at + "script: ".len();
        let sha_len = out[sha_start..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count();
        if sha_len != 40 {
            break;
        }
        let mut end = sha_start + sha_len;
        if let Some(rest) = out[end..].strip_prefix(", on @user_script:") {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            end += ", on @user_script:".len() + digits;
            if out[end..].starts_with('.') {
                end += 1;
            }
        }
        out.replace_range(at..end, "");
    }
    while let Some(at) = out.find("user_script:") {
        let rest = &out[at + "user_script:".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with(": ") {
            break;
        }
        let start = if out[..at].ends_with('@') { at - 1 } else { at };
        out.replace_range(start..at + "user_script:".len() + digits + 2, "");
    }
    out.trim_end().to_owned()
}

/// The error to return at once for a failed first connection that
/// retrying cannot fix, or `None` to retry.
pub(super) async fn fatal_connect_error(
    client: &Client,
    shown: &str,
    e: &redis::RedisError,
    options: &RedisOptions,
) -> Option<Error> {
    if matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM")) {
        return Some(map_err(e.clone()));
    }
    if e.kind() == redis::ErrorKind::InvalidClientConfig {
        return Some(
            Error::new(
                ErrorKind::InvalidUrl,
                format!("invalid Redis URL `{shown}`: {}", error_text(e)),
            )
            .with_source(e.clone()),
        );
    }
    // The redis crate reports a refused SELECT with the server's reason.
    if e.to_string().contains("refused to switch database") {
        let why = e.detail().unwrap_or_default();
        return Some(
            if why.contains("out of range") {
                Error::new(
                    ErrorKind::InvalidUrl,
                    format!(
                        "the database index in {shown} is out of range for this server \
                     (its `databases` setting, 16 by default): use a smaller index"
                    ),
                )
            } else {
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("Redis at {shown} refused to switch to the URL's database: {why}"),
                )
            }
            .with_source(e.clone()),
        );
    }
    let redis::ConnectionAddr::TcpTls { host, port, .. } =
        client.get_connection_info().addr().clone()
    else {
        return None;
    };
    // A plaintext server never answers a TLS hello (it waits for the end of
    // a command line) or answers it with a RESP error: ask it in plaintext.
    let tls_failed = e.kind() == redis::ErrorKind::Client;
    if (tls_failed || e.is_timeout())
        && answers_plaintext(&host, port, options.connect_timeout).await
    {
        return Some(
            Error::new(
                ErrorKind::InvalidUrl,
                format!(
                "TLS handshake failed: is the server plaintext? use redis:// instead of rediss:// \
                 ({shown} answers without TLS)"
            ),
            )
            .with_source(e.clone()),
        );
    }
    // A certificate or protocol error does not go away by itself.
    tls_failed.then(|| {
        Error::new(
            ErrorKind::Backend,
            format!("TLS handshake with {shown} failed: {}", error_text(e)),
        )
        .with_source(e.clone())
    })
}

/// Whether `host:port` answers a plaintext `PING` with a RESP reply.
async fn answers_plaintext(host: &str, port: u16, wait: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await.ok()?;
        Some(matches!(first[0], b'+' | b'-'))
    };
    matches!(tokio::time::timeout(wait, probe).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::strip_script_location;

    #[test]
    fn script_locations_are_stripped() {
        let sha = "d73be94ef1e057b16fcd1d8c9ef5aa8e717ff16e";
        assert_eq!(
            strip_script_location(&format!(
                "key mq:q:dlq holds a string, eddy expects a stream script: {sha}, on @user_script:19."
            )),
            "key mq:q:dlq holds a string, eddy expects a stream"
        );
        assert_eq!(
            strip_script_location(&format!(
                "user_script:1: Script attempted to access nonexistent global variable 'x' script: {sha}, on @user_script:1."
            )),
            "Script attempted to access nonexistent global variable 'x'"
        );
        assert_eq!(
            strip_script_location("Operation against a key holding the wrong kind of value"),
            "Operation against a key holding the wrong kind of value"
        );
        // Not a SHA: left alone.
        assert_eq!(strip_script_location("no script: here"), "no script: here");
    }
}
