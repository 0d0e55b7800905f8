use crate::error::{Error, ErrorKind, Result};

/// The Redis keys of one queue (or one dead-letter queue).
///
/// The default layout is LeanMQ 0.2's, so Python `leanmq` clients share the
/// queues: stream `P NAME`, metadata hash `P NAME:metadata`, TTL index
/// `P NAME:expiry`, group `NAME-group`. eddy adds one key LeanMQ ignores:
/// `P NAME:delayed`, the entries waiting for their delivery time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct QueueKeys {
    /// The queue's name without prefix (`orders`, or `orders:dlq`).
    pub name: String,
    /// The stream key.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// The metadata hash.
    pub meta: String,
    /// The TTL index: stream id → expiry time in float epoch seconds.
    pub expiry: String,
    /// Delayed entries: score = due time in epoch milliseconds.
    pub delayed: String,
    /// Whether this is a dead-letter queue.
    pub is_dlq: bool,
    /// For a queue, its DLQ's stream key; for a DLQ, its queue's stream key.
    pub peer_stream: String,
}

/// Spells key names for a prefix.
///
/// No two (prefix, name) pairs spell one key in two roles (a queue's stream
/// as another queue's DLQ, metadata, TTL index, delayed set or registry),
/// whatever the prefixes, nested ones included (`mq:` and `mq:base:`). The
/// rule that guarantees it:
///
/// - a prefix is empty or ends with `:`;
/// - a name's last `:`-separated segment is none of `dlq`, `metadata`,
///   `expiry`, `delayed`, `registry` (so `dlq`, `x:dlq` and `x:registry` are
///   refused; `dlq:x`, `my-dlq` and `user-registry` are fine).
///
/// Then the last segment of any key tells its role: `registry` a registry,
/// `dlq` a DLQ's stream, `metadata`/`expiry`/`delayed` those keys of the
/// stream before them, anything else a queue's stream. So `dlq` under
/// `mq:base:` is refused: it would be `mq:base:dlq`, the DLQ of `base` under
/// `mq:`. One stream key can still be spelled two ways (`mq:` + `a:b` and
/// `mq:a:` + `b`); that is one queue, every key in the same role, but its
/// group is named after the name (`a:b-group`, `b-group`): address a queue
/// by one spelling.
///
/// ```
/// let layout = eddy::engine::KeyLayout::new("mq:")?;
/// let keys = layout.queue("orders")?;
/// assert_eq!(keys.stream, "mq:orders");
/// assert_eq!(keys.group, "orders-group");
/// assert_eq!(layout.dlq("orders")?.group, "orders-group-dlq");
/// # Ok::<(), eddy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

/// The longest queue name accepted.
pub const MAX_NAME_LEN: usize = 200;

impl KeyLayout {
    /// A layout under `prefix` (LeanMQ's default is `mq:`).
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.len() > MAX_NAME_LEN
            || prefix.contains(['{', '}'])
            || prefix.chars().any(char::is_whitespace)
            || !(prefix.is_empty() || prefix.ends_with(':'))
        {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "invalid prefix `{}`: end it with `:` (as in `mq:`), at most {MAX_NAME_LEN} characters, no whitespace or braces",
                    prefix.escape_debug()
                ),
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The registry set of every queue's and DLQ's stream key.
    pub fn registry(&self) -> String {
        format!("{}registry", self.prefix)
    }

    /// The keys of queue `name`.
    pub fn queue(&self, name: &str) -> Result<QueueKeys> {
        validate_name(name)?;
        let stream = format!("{}{name}", self.prefix);
        Ok(QueueKeys {
            name: name.to_owned(),
            group: format!("{name}-group"),
            meta: format!("{stream}:metadata"),
            expiry: format!("{stream}:expiry"),
            delayed: format!("{stream}:delayed"),
            is_dlq: false,
            peer_stream: format!("{stream}:dlq"),
            stream,
        })
    }

    /// The keys of the dead-letter queue of queue `name`.
    pub fn dlq(&self, name: &str) -> Result<QueueKeys> {
        validate_name(name)?;
        let main = format!("{}{name}", self.prefix);
        let stream = format!("{main}:dlq");
        Ok(QueueKeys {
            name: format!("{name}:dlq"),
            group: format!("{name}-group-dlq"),
            meta: format!("{stream}:metadata"),
            expiry: format!("{stream}:expiry"),
            delayed: format!("{stream}:delayed"),
            is_dlq: true,
            peer_stream: main,
            stream,
        })
    }

    /// The queue name of a registry member (a full stream key), and whether
    /// it is a DLQ; `None` if it is not under this prefix.
    pub fn parse_stream_key(&self, key: &str) -> Option<(String, bool)> {
        let name = key.strip_prefix(&self.prefix)?;
        match name.strip_suffix(":dlq") {
            Some(main) => Some((main.to_owned(), true)),
            None => Some((name.to_owned(), false)),
        }
    }
}

/// The segments a name may not end with: each names a key role (see
/// [`KeyLayout`]).
const RESERVED_SEGMENTS: [&str; 5] = ["dlq", "metadata", "expiry", "delayed", "registry"];

/// Check a queue, service or path name: 1 to 200 characters from
/// `[A-Za-z0-9_.:-]`, whose last `:`-separated segment is not `dlq`,
/// `metadata`, `expiry`, `delayed` or `registry` (it would spell another
/// queue's keys; see [`KeyLayout`]).
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    let last = name.rsplit(':').next().unwrap_or(name);
    let reserved = RESERVED_SEGMENTS.contains(&last);
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || reserved {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "invalid name `{}`: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ - . :, not ending in a segment dlq, metadata, expiry, delayed or registry (`x:dlq` spells the keys of queue `x`)",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Check a consumer name: 1 to 200 printable characters, no whitespace.
pub fn validate_consumer(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!("invalid consumer name `{}`: use 1 to {MAX_NAME_LEN} printable characters without spaces", name.escape_debug()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key a (prefix, name) pair spells, with its role.
    fn keys_of(prefix: &str, name: &str) -> Vec<(String, &'static str)> {
        let layout = KeyLayout::new(prefix).expect("valid prefix");
        let q = layout.queue(name).expect("valid name");
        let d = layout.dlq(name).expect("valid name");
        vec![
            (q.stream, "stream"),
            (q.meta, "metadata"),
            (q.expiry, "expiry"),
            (q.delayed, "delayed"),
            (d.stream, "dlq stream"),
            (d.meta, "dlq metadata"),
            (d.expiry, "dlq expiry"),
            (d.delayed, "dlq delayed"),
            (layout.registry(), "registry"),
        ]
    }

    fn accepted(prefix: &str, name: &str) -> bool {
        KeyLayout::new(prefix).is_ok_and(|l| l.queue(name).is_ok() && l.dlq(name).is_ok())
    }

    #[test]
    fn a_nested_prefix_cannot_adopt_another_queues_dlq() {
        // `mq:base:dlq` is the DLQ of `base` under `mq:`.
        assert!(accepted("mq:", "base"));
        let err = KeyLayout::new("mq:base:")
            .and_then(|l| l.queue("dlq"))
            .expect_err("`dlq` under `mq:base:` spells base's DLQ");
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        for reserved in ["dlq", "metadata", "expiry", "delayed", "registry"] {
            assert!(!accepted("mq:base:", reserved), "{reserved}");
            assert!(!accepted("mq:", &format!("x:{reserved}")), "x:{reserved}");
            assert!(!accepted("", reserved), "{reserved} under the empty prefix");
        }
        // `x:registry` under `` is the registry of prefix `x:`.
        assert!(!accepted("", "x:registry"));
    }

    #[test]
    fn a_prefix_is_empty_or_ends_with_a_colon() {
        // `mq:del` + `ayed` = `mq:delayed`, the delayed set of queue `q` under `m`.
        assert!(KeyLayout::new("mq:del").is_err());
        assert!(KeyLayout::new("mq").is_err());
        for ok in ["", "mq:", "mq:base:", "webhook:", "a.b-c_d:"] {
            assert!(KeyLayout::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn normal_names_still_work() {
        for name in [
            "orders",
            "a.b-c_d",
            "x:y",
            "dlq:x",
            "dlqs",
            "my-dlq",
            "user-registry",
            "metadata2",
            "a:",
        ] {
            assert!(accepted("mq:", name), "{name}");
            assert!(accepted("mq:base:", name), "{name}");
        }
    }

    /// No key plays two different roles for two accepted pairs, over every
    /// pair built from a set of prefixes and names chosen to straddle the
    /// boundary. (The same stream key under two spellings, `mq:` + `a:b`
    /// and `mq:a:` + `b`, is one queue: every key keeps its role.)
    #[test]
    fn no_key_plays_two_roles() {
        let prefixes = [
            "",
            "mq:",
            "mq:base:",
            "mq:base:dlq:",
            "base:",
            "x:",
            "mq:a:",
        ];
        let names = [
            "base",
            "dlq",
            "a",
            "a:b",
            "b",
            "x",
            "registry",
            "x:registry",
            "base:dlq",
            "dlq:metadata",
            "metadata",
            "expiry",
            "delayed",
            "q",
            "mq",
            "dlq:x",
            "a:",
        ];
        let mut roles: std::collections::HashMap<String, (&str, String)> = Default::default();
        for p in prefixes {
            for n in names {
                if !accepted(p, n) {
                    continue;
                }
                for (key, role) in keys_of(p, n) {
                    let by = format!("({p:?}, {n:?})");
                    if let Some((other_role, other)) = roles.get(&key) {
                        assert_eq!(
                            *other_role, role,
                            "`{key}` is {role} of {by} and {other_role} of {other}"
                        );
                    } else {
                        roles.insert(key, (role, by));
                    }
                }
            }
        }
    }
}
