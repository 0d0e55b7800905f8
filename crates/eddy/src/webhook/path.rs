//! Webhook paths and the queues they map to, exactly as LeanMQ 0.2's
//! `LeanMQWebhook._normalize_path` and `_path_to_queue_name` do it.

use crate::engine::validate_name;
use crate::error::{Error, ErrorKind, Result};

/// The path as LeanMQ records it in `_leanmq.webhook.path`: one trailing
/// slash removed (unless the path is `/`), a leading slash added if missing.
///
/// ```
/// use eddy::webhook::normalize_path;
/// assert_eq!(normalize_path("/order/status/"), "/order/status");
/// assert_eq!(normalize_path("order/status"), "/order/status");
/// assert_eq!(normalize_path("/"), "/");
/// ```
pub fn normalize_path(path: &str) -> String {
    let path = match path.strip_suffix('/') {
        Some(stripped) if path != "/" => stripped,
        _ => path,
    };
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// The queue a path maps to (under the webhook prefix): slashes stripped at
/// both ends, inner slashes and every other character that is not a letter
/// or digit turned into `_`.
///
/// Python's `str.isalnum()` is Unicode-aware, so LeanMQ keeps `é` or `名` in
/// a queue name, while eddy's queue names are ASCII (`[A-Za-z0-9_.:-]`).
/// Rather than send to a different queue than LeanMQ would, a path with a
/// non-ASCII letter or digit is refused with [`ErrorKind::InvalidName`].
/// Other non-ASCII characters (`€`, `—`, spaces) become `_`, as in LeanMQ.
/// (Every character Python's `isalnum()` accepts, Rust's
/// `char::is_alphanumeric` accepts too, so this never maps a path to a
/// queue LeanMQ would not.) A path that maps to an empty name (`/`), a name
/// over 200 characters, or `registry` (the key of LeanMQ's queue registry)
/// is refused too.
///
/// ```
/// use eddy::webhook::queue_name;
/// assert_eq!(queue_name("/order/status/")?, "order_status");
/// assert_eq!(queue_name("payments.v2/refund-now")?, "payments_v2_refund_now");
/// assert!(queue_name("/café").is_err());
/// # Ok::<(), eddy::Error>(())
/// ```
pub fn queue_name(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    let mut name = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if c.is_alphanumeric() {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "webhook path `{}` contains `{c}`, a non-ASCII letter or digit: LeanMQ would keep it in the queue name but eddy's queue names are ASCII; use ASCII letters and digits in webhook paths",
                    path.escape_debug()
                ),
            ));
        } else {
            name.push('_');
        }
    }
    validate_name(&name).map_err(|_| {
        Error::new(
            ErrorKind::InvalidName,
            format!(
                "webhook path `{}` maps to the queue name `{name}`, which is empty, longer than 200 characters or reserved (`registry`): use a path with 1 to 200 letters, digits and separators",
                path.escape_debug()
            ),
        )
    })?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_paths_like_leanmq() {
        for (path, want) in [
            ("/order/status/", "order_status"),
            ("/order/status", "order_status"),
            ("order/status", "order_status"),
            ("//order//status//", "order__status"),
            ("/orders/{id}/items", "orders__id__items"),
            ("/a-b.c:d e", "a_b_c_d_e"),
            ("/payments/€/refund", "payments___refund"),
            ("/x—y", "x_y"),
            ("/reply/0123abcdEF", "reply_0123abcdEF"),
            ("_reply", "_reply"),
            ("/registry/x", "registry_x"),
        ] {
            assert_eq!(queue_name(path).ok().as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn refuses_what_eddy_cannot_name() {
        for path in ["/", "", "///", "/café", "/名前", "/x/٣", "/registry"] {
            let err = queue_name(path).err().map(|e| e.kind());
            assert_eq!(err, Some(ErrorKind::InvalidName), "{path}");
        }
        assert!(queue_name(&"a".repeat(200)).is_ok());
        assert!(queue_name(&"a".repeat(201)).is_err());
    }

    #[test]
    fn normalizes_like_leanmq() {
        for (path, want) in [
            ("/order/status/", "/order/status"),
            ("/order/status", "/order/status"),
            ("order/status/", "/order/status"),
            ("/", "/"),
            ("", "/"),
            ("//a//", "//a/"),
        ] {
            assert_eq!(normalize_path(path), want, "{path}");
        }
    }
}
