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
///
/// # On Redis Cluster
///
/// Redis Cluster runs a script or a MULTI/EXEC only when every key it
/// touches hashes to one slot, and eddy's atomic steps span a queue's
/// stream, metadata, TTL index, delayed set and its DLQ's keys. The
/// [clustered](KeyLayout::clustered) layout (chosen by itself on a
/// `redis+cluster://` engine) therefore wraps the name in a hash tag:
/// stream `P{NAME}`, metadata `P{NAME}:metadata`, DLQ `P{NAME}:dlq`, group
/// `NAME-group` as before, so a queue and its DLQ share a slot and
/// different queues spread over the cluster. This is the one place where
/// the layout departs from LeanMQ's: a Python client that spells
/// `mq:orders` does not see the cluster's `mq:{orders}`.
///
/// A name may carry its own hash tag, `{TAG}` with text outside it
/// (`{shop}orders`, `{shop}:payments`); then the name is used as it is, so
/// queues with one tag share a slot and can share a
/// [transaction](crate::Eddy::transaction) on a cluster. A name that is
/// nothing but a tag (`{orders}`) is refused: it would spell the keys of
/// `orders`.
///
/// ```
/// let layout = eddy::engine::KeyLayout::clustered("mq:")?;
/// assert_eq!(layout.queue("orders")?.stream, "mq:{orders}");
/// assert_eq!(layout.dlq("orders")?.stream, "mq:{orders}:dlq");
/// assert_eq!(layout.queue("{shop}orders")?.stream, "mq:{shop}orders");
/// # Ok::<(), eddy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
    clustered: bool,
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
            clustered: false,
        })
    }

    /// The Redis Cluster layout under `prefix`: every queue's keys, its
    /// DLQ's included, in one hash slot (see [the type's
    /// docs](KeyLayout#on-redis-cluster)).
    pub fn clustered(prefix: &str) -> Result<Self> {
        Ok(Self {
            clustered: true,
            ..Self::new(prefix)?
        })
    }

    /// This layout, clustered.
    pub(crate) fn into_clustered(self) -> Self {
        Self {
            clustered: true,
            ..self
        }
    }

    /// Whether this is the [clustered](KeyLayout::clustered) layout.
    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    /// The stream key of queue `name` (validated).
    fn stream_key(&self, name: &str) -> String {
        if self.clustered && !name.contains('{') {
            format!("{}{{{name}}}", self.prefix)
        } else {
            format!("{}{name}", self.prefix)
        }
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
        let stream = self.stream_key(name);
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
        let main = self.stream_key(name);
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
        let (name, is_dlq) = match name.strip_suffix(":dlq") {
            Some(main) => (main, true),
            None => (name, false),
        };
        // The clustered layout's own tag: `{NAME}` is queue NAME.
        let name = match name.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            Some(inner) if self.clustered && !inner.contains(['{', '}']) => inner,
            _ => name,
        };
        Some((name.to_owned(), is_dlq))
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
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'{' | b'}'));
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
    if name.contains(['{', '}']) && !is_one_hash_tag(name) {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "invalid name `{}`: braces must form one Redis Cluster hash tag, `{{TAG}}` with a non-empty TAG and text outside it (`{{shop}}orders`), which puts queues with one tag in one slot",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Whether `name` holds exactly one `{TAG}` (non-empty) and more text
/// outside it.
fn is_one_hash_tag(name: &str) -> bool {
    let (Some(open), Some(close)) = (name.find('{'), name.find('}')) else {
        return false;
    };
    open < close
        && close > open + 1
        && name.matches('{').count() == 1
        && name.matches('}').count() == 1
        && !(open == 0 && close == name.len() - 1)
}

/// The hash tag of a Redis key as Redis Cluster reads it: the text between
/// the first `{` and the next `}` if not empty, else the whole key. Keys
/// with one tag share a hash slot.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis engine and the tests
pub(crate) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
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

    #[test]
    fn the_clustered_layout_keeps_a_queue_and_its_dlq_in_one_slot() {
        let layout = KeyLayout::clustered("mq:").expect("valid prefix");
        for name in ["orders", "sub:payment-service", "{shop}orders", "a:{b}"] {
            let q = layout.queue(name).expect("valid name");
            let d = layout.dlq(name).expect("valid name");
            let tag = hash_tag(&q.stream);
            for key in [
                &q.stream, &q.meta, &q.expiry, &q.delayed, &d.stream, &d.meta, &d.expiry,
                &d.delayed,
            ] {
                assert_eq!(hash_tag(key), tag, "{key} of {name}");
            }
            assert_eq!(
                layout.parse_stream_key(&q.stream),
                Some((name.to_owned(), false))
            );
            assert_eq!(
                layout.parse_stream_key(&d.stream),
                Some((name.to_owned(), true))
            );
        }
        assert_eq!(layout.queue("orders").expect("valid").group, "orders-group");
        assert_eq!(hash_tag("mq:{shop}orders"), "shop");
        assert_eq!(hash_tag("mq:{}x{y}"), "mq:{}x{y}");
        assert_ne!(
            hash_tag(&layout.queue("a").expect("valid").stream),
            hash_tag(&layout.queue("b").expect("valid").stream)
        );
        // Standalone keeps LeanMQ's spelling.
        assert_eq!(
            KeyLayout::new("mq:")
                .expect("valid")
                .queue("orders")
                .expect("valid")
                .stream,
            "mq:orders"
        );
    }

    #[test]
    fn braces_must_form_one_hash_tag() {
        for bad in ["{orders}", "{}x", "x{", "}x{", "{a}{b}", "{a{b}}", "x}"] {
            let err = validate_name(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad}");
        }
        for ok in ["{shop}orders", "orders{shop}", "{shop}:orders", "a{b}c"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
    }
}
